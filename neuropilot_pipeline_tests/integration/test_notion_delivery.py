"""Notion through the official notion-client against a local server speaking the documented API
(version 2025-09-03: databases hold data sources; pages live in a data source)."""

import http.server
import json
import re
import threading
import uuid

import pytest

from neuropilot_pipeline.cli import main as cli_main
from neuropilot_pipeline.core.notion import REQUIRED_PROPERTIES, NotionError, NotionPublisher, make_client

from .test_report_delivery import DAY, deliver, fleet_home, home, slack, status  # noqa: F401  (fixtures)

KEY = "secret_planted-notion-key-91ab"
DB, DS = "db-1", "ds-1"


class NotionServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, properties):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.properties = {"Name": {"id": "title", "type": "title"}, **properties}
        self.pages, self.children, self.script, self.calls = {}, {}, [], []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, code, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code, error, message):
        self._reply(code, {"object": "error", "status": code, "code": error, "message": message})

    def handle_one(self, method):
        srv: NotionServer = self.server
        srv.calls.append((method, self.path))
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self._error(401, "unauthorized", "API token is invalid.")
        if self.headers.get("Notion-Version") != "2025-09-03":
            return self._error(400, "missing_version", "Notion-Version header failed validation.")
        if srv.script:
            code = srv.script.pop(0)
            return self._reply(code, {"object": "error", "status": code, "code": "rate_limited" if code == 429
                                      else "internal_server_error", "message": "try later"},
                               [("Retry-After", "1")] if code == 429 else [])
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?")[0]
        if len(body.get("children", [])) > 100:  # the documented limit per request
            return self._error(400, "validation_error", "body.children.length should be ≤ `100`, instead was "
                                                        f"`{len(body['children'])}`.")
        if method == "GET" and path == f"/v1/databases/{DB}":
            return self._reply(200, {"object": "database", "id": DB, "data_sources": [{"id": DS, "name": "Reports"}]})
        if path == f"/v1/data_sources/{DS}":
            if method == "PATCH":
                srv.properties.update({n: {"id": n, "type": next(iter(p))} for n, p in body["properties"].items()})
            return self._reply(200, {"object": "data_source", "id": DS, "properties": srv.properties})
        if method == "POST" and path == f"/v1/data_sources/{DS}/query":
            date = body["filter"]["date"]["equals"]
            hits = [p for p in srv.pages.values() if p["properties"]["Date"]["date"]["start"] == date]
            return self._reply(200, {"object": "list", "results": hits, "has_more": False, "next_cursor": None})
        if method == "POST" and path == "/v1/pages":
            unknown = set(body["properties"]) - set(srv.properties)
            if unknown:
                return self._error(400, "validation_error", f"{sorted(unknown)[0]} is not a property that exists.")
            page = {"object": "page", "id": str(uuid.uuid4()), "properties": body["properties"], "parent": body["parent"]}
            srv.pages[page["id"]] = page
            srv.children[page["id"]] = [{"id": str(uuid.uuid4()), **b} for b in body.get("children", [])]
            return self._reply(200, page)
        m = re.fullmatch(r"/v1/pages/([\w-]+)", path)
        if method == "PATCH" and m:
            srv.pages[m.group(1)]["properties"].update(body["properties"])
            return self._reply(200, srv.pages[m.group(1)])
        m = re.fullmatch(r"/v1/blocks/([\w-]+)/children", path)
        if m and method == "GET":
            return self._reply(200, {"object": "list", "results": srv.children[m.group(1)], "has_more": False,
                                     "next_cursor": None})
        if m and method == "PATCH":
            new = [{"id": str(uuid.uuid4()), **b} for b in body["children"]]
            srv.children[m.group(1)].extend(new)
            return self._reply(200, {"object": "list", "results": new, "has_more": False, "next_cursor": None})
        m = re.fullmatch(r"/v1/blocks/([\w-]+)", path)
        if m and method == "DELETE":
            for kids in srv.children.values():
                kids[:] = [k for k in kids if k["id"] != m.group(1)]
            return self._reply(200, {"object": "block", "id": m.group(1), "archived": True})
        return self._error(404, "object_not_found", f"no route {method} {path}")

    def do_GET(self):
        self.handle_one("GET")

    def do_POST(self):
        self.handle_one("POST")

    def do_PATCH(self):
        self.handle_one("PATCH")

    def do_DELETE(self):
        self.handle_one("DELETE")


def server_with(properties):
    srv = NotionServer(properties)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


ALL = {n: {"id": n, "type": t} for n, t in REQUIRED_PROPERTIES.items()}


@pytest.fixture
def notion(home, monkeypatch):  # noqa: F811
    srv = server_with({k: v for k, v in ALL.items() if k != "Projected Cost"})
    monkeypatch.setenv("NOTION_API_KEY", KEY)
    monkeypatch.setenv("NOTION_DATABASE_ID", DB)
    monkeypatch.setenv("NOTION_BASE_URL", srv.url)
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    yield srv
    srv.shutdown()


def notion_status(result):
    return result.asset_materializations_for_node("report_delivery")[-1].metadata["notion"].value


def test_missing_property_is_named_then_setup_adds_it_and_the_page_is_created_once(notion, capsys):
    failed = deliver()
    assert failed.success and "lacks Projected Cost" in notion_status(failed) and "notion-setup" in notion_status(failed)
    assert not notion.pages
    assert cli_main(["notion-setup"]) == 0
    assert "Projected Cost" in capsys.readouterr().out and notion.properties["Projected Cost"]["type"] == "number"
    first = deliver()
    assert notion_status(first).startswith("created page")
    (page,) = notion.pages.values()
    assert page["properties"]["Date"]["date"]["start"] == DAY and page["properties"]["Anomalies"]["number"] == 1
    assert page["parent"] == {"type": "data_source_id", "data_source_id": DS}
    n_blocks = len(notion.children[page["id"]])
    assert n_blocks > 10
    assert notion_status(deliver()).startswith("already delivered at")  # once per date...
    again = deliver(resend=True)  # ...unless re-sent on purpose: then the page is updated in place
    assert notion_status(again).startswith("updated page") and len(notion.pages) == 1
    assert len(notion.children[page["id"]]) == n_blocks  # replaced, not appended twice


def test_rate_limit_and_server_errors_are_retried_by_the_client(notion):
    cli_main(["notion-setup"])
    notion.script = [429, 500]
    result = deliver()
    assert notion_status(result).startswith("created page")


def test_wrong_property_type_names_the_property(notion):
    notion.properties["Health Score"] = {"id": "h", "type": "rich_text"}
    publisher = NotionPublisher(make_client(KEY, notion.url), DB)
    with pytest.raises(NotionError, match="'Health Score' is of type 'rich_text'.*needs 'number'"):
        publisher.check_schema(fix=True)


def test_the_key_is_written_nowhere(notion, home):  # noqa: F811
    cli_main(["notion-setup"])
    deliver()
    for path in home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_fleet_report_is_published_whole_past_the_100_block_limit(fleet_home, monkeypatch):  # noqa: F811
    srv = server_with(ALL)
    monkeypatch.setenv("NOTION_API_KEY", KEY)
    monkeypatch.setenv("NOTION_DATABASE_ID", DB)
    monkeypatch.setenv("NOTION_BASE_URL", srv.url)
    try:
        result = deliver()
        assert notion_status(result).startswith("created page")
        (page,) = srv.pages.values()
        texts = [b[b["type"]]["rich_text"][0]["text"]["content"] for b in srv.children[page["id"]]]
        assert len(texts) > 100  # more than one request's worth, all there, in order
        assert texts[0].startswith("Fleet: 40 services")
        assert texts[1].startswith("svc-07:") and "MISSED" in texts[1]  # the SLA miss first
        assert sum(t.startswith("svc-") and "threshold changes" in t for t in texts) == 40
        assert any(t.startswith("svc-07: health") for t in texts[41:])  # and its details
        assert page["properties"]["Status"]["select"]["name"] == "unhealthy"  # svc-07's, not a calm one's
    finally:
        srv.shutdown()
