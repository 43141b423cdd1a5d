"""The daily report as a row of the team's Notion database (official notion-client, API 2025-09-03).

One page per report date: re-materializing the report updates that page (properties and
content) instead of adding another. The database's schema is checked first; `neuropilot
notion-setup` adds the missing properties, and a property of the wrong type is named in
the error. notion-client retries 429 (Retry-After) and 5xx itself.
"""

from __future__ import annotations

from typing import Any, Mapping

import httpx
from notion_client import Client
from notion_client.errors import APIResponseError, RequestTimeoutError

REQUIRED_PROPERTIES = {
    "Date": "date", "Health Score": "number", "Status": "select", "Cost": "number",
    "Projected Cost": "number", "Anomalies": "number", "Actions": "rich_text",
}


class NotionError(RuntimeError):
    pass


def make_client(api_key: str, base_url: str | None = None, retries: int = 4, initial_delay_ms: int = 1000) -> Client:
    options: dict[str, Any] = {"auth": api_key, "timeout_ms": 30_000,
                               "retry": {"max_retries": retries, "initial_retry_delay_ms": initial_delay_ms}}
    if base_url:
        options["base_url"] = base_url
    import logging

    return Client(options, log_level=logging.WARNING)


class NotionPublisher:
    def __init__(self, client: Client, database_id: str):
        self.client, self.database_id = client, database_id

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (APIResponseError, RequestTimeoutError) as exc:
            code = getattr(exc, "code", type(exc).__name__)
            raise NotionError(f"Notion {what} failed ({code}): {exc}. Check NOTION_DATABASE_ID and that the "
                              "integration is shared with the database.") from None
        except httpx.TransportError as exc:
            # Notion (or the network to it) is down: the delivery is retried later, nothing is lost.
            raise NotionError(f"Notion {what} failed: cannot reach the API ({type(exc).__name__}) after the "
                              "client's retries.") from None

    def data_source_id(self) -> str:
        db = self._call("database lookup", self.client.databases.retrieve, database_id=self.database_id)
        sources = db.get("data_sources") or []
        if not sources:
            raise NotionError(f"Notion database {self.database_id} has no data source.")
        return sources[0]["id"]

    def check_schema(self, fix: bool = False) -> dict[str, str]:
        """{property: 'ok' | 'added' | 'missing'}; a property of the wrong type is an error."""
        ds_id = self.data_source_id()
        props = self._call("schema lookup", self.client.data_sources.retrieve, data_source_id=ds_id)["properties"]
        status, missing = {}, {}
        for name, kind in REQUIRED_PROPERTIES.items():
            if name not in props:
                missing[name] = {kind: {}}
                status[name] = "added" if fix else "missing"
            elif props[name].get("type") != kind:
                raise NotionError(f"Notion property {name!r} is of type {props[name].get('type')!r}, NeuroPilot needs "
                                  f"{kind!r}. Change its type in Notion or rename it, then run `neuropilot notion-setup`.")
            else:
                status[name] = "ok"
        if missing and fix:
            self._call("schema update", self.client.data_sources.update, data_source_id=ds_id, properties=missing)
        elif missing:
            raise NotionError(f"Notion database lacks {', '.join(missing)}: run `neuropilot notion-setup` to add them.")
        return status

    def _title_property(self, ds_id: str) -> str:
        props = self._call("schema lookup", self.client.data_sources.retrieve, data_source_id=ds_id)["properties"]
        return next((n for n, p in props.items() if p.get("type") == "title"), "Name")

    def publish(self, report: Mapping[str, Any]) -> tuple[str, str]:
        """Create or update the page for the report's date; returns (page id, 'created' | 'updated')."""
        self.check_schema(fix=False)
        ds_id = self.data_source_id()
        date = report["date"]
        props = page_properties(report, self._title_property(ds_id))
        found = self._call("query", self.client.data_sources.query, data_source_id=ds_id,
                           filter={"property": "Date", "date": {"equals": date}})["results"]
        blocks = page_blocks(report)
        # Notion takes at most 100 children per request: the first hundred go with the page,
        # the rest are appended a hundred at a time.
        if found:
            page_id, outcome = found[0]["id"], "updated"
            self._call("page update", self.client.pages.update, page_id=page_id, properties=props)
            children = self._call("content read", self.client.blocks.children.list, block_id=page_id)["results"]
            for child in children:
                self._call("content update", self.client.blocks.delete, block_id=child["id"])
            rest = blocks
        else:
            page = self._call("page create", self.client.pages.create,
                              parent={"type": "data_source_id", "data_source_id": ds_id}, properties=props,
                              children=blocks[:NOTION_MAX_CHILDREN])
            page_id, outcome, rest = page["id"], "created", blocks[NOTION_MAX_CHILDREN:]
        for i in range(0, len(rest), NOTION_MAX_CHILDREN):
            self._call("content update", self.client.blocks.children.append, block_id=page_id,
                       children=rest[i:i + NOTION_MAX_CHILDREN])
        return page_id, outcome


NOTION_MAX_CHILDREN = 100


def _text(s: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": s[:1900]}}]


def page_properties(report: Mapping[str, Any], title_property: str) -> dict[str, Any]:
    from .report_render import by_attention

    services = report["services"]
    first = services[by_attention(report)[0]]  # the one needing attention most sets the status
    health = min(r["health"]["score"] for r in services.values())
    changes = sum(len(r["thresholds"]["changes"]) for r in services.values())
    return {
        title_property: {"title": _text(f"NeuroPilot {report['date']}")},
        "Date": {"date": {"start": report["date"]}},
        "Health Score": {"number": round(health, 1)},
        "Status": {"select": {"name": first["health"]["status"]}},
        "Cost": {"number": round(sum(r["cost"]["today"] for r in services.values()), 2)},
        "Projected Cost": {"number": round(sum(r["cost"]["projected_monthly"] for r in services.values()), 2)},
        "Anomalies": {"number": sum(r["anomalies"]["total"] for r in services.values())},
        "Actions": {"rich_text": _text(f"{changes} threshold changes, "
                                       f"{sum(len(r['scaling_actions']) for r in services.values())} scaling actions")},
    }


def page_blocks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []

    def heading(t):
        blocks.append({"object": "block", "type": "heading_2", "heading_2": {"rich_text": _text(t)}})

    def bullet(t):
        blocks.append({"object": "block", "type": "bulleted_list_item", "bulleted_list_item": {"rich_text": _text(t)}})

    from .report_render import by_attention

    services = report["services"]
    order = by_attention(report)
    detailed = order
    if len(services) > 1:
        heading(f"Fleet: {len(services)} services, those needing attention first")
        for name in order:
            r = services[name]
            bullet(f"{name}: health {r['health']['score']:.0f}, SLA {r['sla']['sla_percent']} %"
                   f"{'' if r['sla']['met'] else ' MISSED'}, {r['anomalies']['total']} anomalies, "
                   f"{len(r['thresholds']['changes'])} threshold changes")
        # Details for the services the report charts (those needing attention most).
        detailed = [s for s in order if s in (report.get("charted_services") or order)]
    for service in detailed:
        r = services[service]
        heading(f"{service}: health {r['health']['score']:.0f} ({r['health']['status']})")
        bullet(f"SLA {r['sla']['sla_percent']} % (target {r['sla']['target']} %)")
        bullet(f"Cost ${r['cost']['today']:.2f} today, projected ${r['cost']['projected_monthly']:.0f}/month "
               f"({r['cost']['variance_percent']:+.0f} % vs budget)")
        heading("Trends")
        for metric, t in r["trends"].items():
            bullet(f"{metric}: {t['direction']} ({t['change_pct']} % vs previous 24 h), {t['vs_baseline_direction']} vs 7 days")
        heading("Anomalies")
        bullet(", ".join(f"{k} {v}" for k, v in r["anomalies"]["by_severity"].items()))
        for a in r["anomalies"]["top"][:5]:
            bullet(f"{a.get('metric')} {a.get('severity')}: {a.get('explanation', '')}")
        heading("Actions")
        for c in r["thresholds"]["changes"] or [{"name": "no threshold changes", "from": "", "to": "", "reason": ""}]:
            bullet(f"{c['name']} {c['from']} → {c['to']} {c['reason']}".strip())
        heading("Learning")
        bullet(f"model {r['learning']['model_version']} ({r['learning']['status']}), policy {r['learning']['policy_phase']}")
        heading("Recommendations")
        for rec in r["recommendations"] or ["none"]:
            bullet(rec)
    return blocks
