"""Delivering the daily report: a Slack Block Kit card through an incoming webhook.

Retries: 429 honours Retry-After, 5xx and timeouts back off exponentially; a 4xx is a
configuration problem and is reported at once. `slack_notifications_per_hour` is kept
across runs. The webhook URL is a secret: it comes from the environment and never appears
in errors, logs or metadata.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import requests

from .prometheus import QueryLedger, RateLimitExceeded

SEVERITY_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:", "medium": ":large_yellow_circle:",
                  "low": ":white_circle:"}


@dataclass
class Delivery:
    ok: bool
    status: str
    attempts: int


def report_blocks(report: Mapping[str, Any], run_url: str | None = None) -> dict[str, Any]:
    """A phone-sized card: header, key metrics, anomalies, actions, recommendations, run link."""
    from .report_render import by_attention

    blocks: list[dict[str, Any]] = []
    services = report["services"]
    order = by_attention(report) if len(services) > 1 else list(services)
    if len(services) > 1:
        missed = [s for s in order if not services[s]["sla"]["met"]]
        changed = sum(len(services[s]["thresholds"]["changes"]) for s in order)
        blocks.append({"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                   "text": f"NeuroPilot {report['date']} — {len(services)} services"}})
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*SLA missed*: {', '.join(missed) or 'none'}\n*Anomalies*: "
            f"{sum(services[s]['anomalies']['total'] for s in order)}  *Threshold changes*: {changed}\n"
            "Services needing attention most come first.")}})
        blocks.append({"type": "divider"})
    for service in order:
        r = services[service]
        h, sla, cost = r["health"], r["sla"], r["cost"]
        blocks.append({"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                   "text": f"NeuroPilot {report['date']} — {service}: health {h['score']:.0f}"}})
        m = r["key_metrics"]
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*SLA*\n{sla['sla_percent']} % {'✅' if sla['met'] else '❌'} (target {sla['target']} %)"},
            {"type": "mrkdwn", "text": f"*p95 latency*\n{_n(m['p95_latency_ms']['mean'])} ms"},
            {"type": "mrkdwn", "text": f"*Error rate*\n{_n(m['error_rate_percent']['mean'])} %"},
            {"type": "mrkdwn", "text": f"*CPU*\n{_n(m['cpu_percent']['mean'])} %"},
            {"type": "mrkdwn", "text": f"*Cost*\n${cost['today']:.2f} today, ${cost['projected_monthly']:.0f}/month "
                                       f"({cost['variance_percent']:+.0f} % vs budget)"},
            {"type": "mrkdwn", "text": f"*Model*\n{r['learning']['status']} ({r['learning']['policy_phase'] or '—'})"},
        ]})
        sev = r["anomalies"]["by_severity"]
        top = r["anomalies"]["top"][:3]
        text = f"*Anomalies*: {r['anomalies']['total']} — " + ", ".join(f"{SEVERITY_EMOJI[k]} {k} {v}" for k, v in sev.items() if v)
        if top:
            text += "\n" + "\n".join(f"• {a.get('metric')} {a.get('severity')}: {a.get('explanation', '')[:140]}" for a in top)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        changes = r["thresholds"]["changes"]
        actions = "\n".join(f"• {c['name']} {c['from']} → {c['to']} ({'applied' if c.get('applied') else 'not applied'})"
                            for c in changes[-5:]) or "no threshold changes"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Actions*\n{actions}\n"
                                                   f"{len(r['scaling_actions'])} scaling actions"}})
        if r["recommendations"]:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "*Recommendations*\n" +
                                                       "\n".join(f"• {x}" for x in r["recommendations"])}})
        blocks.append({"type": "divider"})
    # Slack accepts at most 50 blocks: keep whole service cards, then say what was left out.
    footer = []
    if len(blocks) > 48:
        cut = max(i for i, b in enumerate(blocks[:48]) if b["type"] == "divider") + 1
        shown = sum(1 for b in blocks[:cut] if b["type"] == "header") - (1 if len(services) > 1 else 0)
        blocks = blocks[:cut]
        footer.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                       f"{len(services) - shown} more services are in the full report."}]})
    if run_url:
        footer.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{run_url}|Dagster run>"}]})
    fallback = f"NeuroPilot daily report {report['date']}"
    return {"text": fallback, "blocks": blocks + footer}


def _n(v: Any) -> str:
    return "—" if v is None else f"{v:,.1f}"


class SlackWebhook:
    def __init__(self, url: str, ledger: QueryLedger | None = None, timeout_s: float = 10.0, retries: int = 4,
                 backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 session: requests.Session | None = None):
        self._url = url
        self.ledger, self.timeout_s, self.retries, self.backoff_s, self.sleep = ledger, timeout_s, retries, backoff_s, sleep
        self.session = session or requests.Session()

    def post(self, payload: Mapping[str, Any], what: str = "Slack message") -> Delivery:
        last = ""
        for attempt in range(1, self.retries + 2):
            if self.ledger is not None:
                try:
                    self.ledger.reserve(1, what)
                except RateLimitExceeded as exc:
                    return Delivery(False, str(exc), attempt - 1)
            try:
                resp = self.session.post(self._url, json=payload, timeout=self.timeout_s)
            except requests.Timeout:
                last = f"no answer within {self.timeout_s:g} s"
            except requests.ConnectionError as exc:
                last = f"cannot connect ({type(exc).__name__})"
            else:
                if self.ledger is not None:
                    self.ledger.record()
                if resp.status_code == 200:
                    return Delivery(True, "delivered", attempt)
                if resp.status_code == 429:
                    last = "HTTP 429 (rate limited)"
                    wait = resp.headers.get("Retry-After", "")
                    if attempt <= self.retries:
                        self.sleep(min(float(wait) if wait.isdigit() else self.backoff_s * 2 ** attempt, 300.0))
                        continue
                elif resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}"
                else:
                    # 4xx: the webhook is revoked, the payload invalid... retrying will not help.
                    return Delivery(False, f"Slack refused the message (HTTP {resp.status_code}: {resp.text[:100]}); "
                                           "check SLACK_WEBHOOK_URL", attempt)
            if attempt <= self.retries:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
        return Delivery(False, f"Slack did not accept the message after {self.retries + 1} attempts: {last}",
                        self.retries + 1)
