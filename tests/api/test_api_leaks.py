"""The API's smaller leaks over real HTTP: one not-found answer for every hidden or unknown id or state, filter
values checked before they reach a visibility query, and the security headers on every error answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from structlog.testing import capture_logs

from api.app import create_app
from tests.api.conftest import auth, sign_in
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.fhir_factory import HIGH_RISK, make_member
from tests.net import free_port

SECURITY = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy",
            "cache-control")


def assert_security_headers(response: httpx.Response) -> None:
    missing = [h for h in SECURITY if h not in response.headers]
    assert [] == missing, f"{response.status_code} {response.request.url}: no {missing}"


async def test_hidden_unknown_and_closed_ids_get_one_and_the_same_not_found_answer(
        start_run: StartRun, store, http: httpx.AsyncClient, approvers: dict[str, str]) -> None:  # noqa: ANN001
    """For an RN, an MD's item, an unknown item, an unknown run and a run that has completed answer the same
    404 body on show, decide and bulk: none of them confirms that an id exists or what state it is in."""
    open_run = await start_run(make_member(store, **HIGH_RISK), policy=ALWAYS_ASK)
    md_run = await start_run(make_member(store, deceased=True), policy=ALWAYS_ASK)
    done_run = await start_run(make_member(store, **HIGH_RISK), policy=ALWAYS_ASK)
    (md_item,) = (await wait_for_status(md_run, lambda s: len(s.pending_approvals) == 1)).pending_approvals
    await wait_for_status(open_run, lambda s: len(s.pending_approvals) == 3)
    done_items = (await wait_for_status(done_run, lambda s: len(s.pending_approvals) == 3)).pending_approvals
    for item in done_items:  # an MD approves everything: the run completes
        answer = await http.post(f"/api/approvals/{done_run.id}/{item.approval_id}/decision",
                                 json={"decision": "approve", "digest": item.digest}, headers=auth(approvers["md.lee"]))
        assert 200 == answer.status_code, answer.text
    assert "completed" == (await wait_for_status(done_run, lambda s: s.status == "completed")).status
    done_rn = next(p for p in done_items if p.required_role == "rn")

    cases = {
        "hidden item": (md_run.id, md_item.approval_id, md_item.digest),
        "unknown item": (open_run.id, "a9-nothing.1", "0" * 64),
        "unknown run": ("outreach-nobody-nothing", "a1-task.1", "0" * 64),
        "completed run": (done_run.id, done_rn.approval_id, done_rn.digest),
    }
    rn = auth(approvers["rn.kim"])
    shown, decided, bulked = {}, {}, {}
    for name, (workflow_id, approval_id, digest) in cases.items():
        show = await http.get(f"/api/approvals/{workflow_id}/{approval_id}", headers=rn)
        decide = await http.post(f"/api/approvals/{workflow_id}/{approval_id}/decision", headers=rn,
                                 json={"decision": "reject", "digest": digest, "reason": "not needed"})
        bulk = await http.post("/api/approvals/bulk", headers=rn, json={
            "decision": "reject", "tool": "create_task", "reason": "not needed",
            "items": [{"workflow_id": workflow_id, "approval_id": approval_id, "digest": digest}]})
        assert (404, 404, 200) == (show.status_code, decide.status_code, bulk.status_code), (name, decide.text)
        shown[name], decided[name] = show.json(), decide.json()
        (result,) = bulk.json()["results"]
        bulked[name] = (result["ok"], result["error_code"], result["error"])
        assert_security_headers(decide)
    assert 1 == len({str(v) for v in shown.values()}), shown
    assert 1 == len({str(v) for v in decided.values()}), decided
    assert 1 == len(set(bulked.values())), bulked
    assert shown["unknown run"] == decided["completed run"]  # one text across endpoints too
    assert "completed" not in str(decided.values()) and "not running" not in str(decided.values())

    runs = [await http.get(f"/api/runs/{wid}", headers=rn) for wid in (md_run.id, "outreach-nobody-nothing")]
    assert [404, 404] == [r.status_code for r in runs]
    assert runs[0].json() == runs[1].json() == shown["hidden item"]


async def test_a_quote_in_a_filter_is_a_422_naming_the_parameter_not_a_500(
        http: httpx.AsyncClient, approvers: dict[str, str]) -> None:
    """``?queue="`` used to break the visibility query (500, without security headers); every filter value is
    checked first: 422 naming ``queue`` and the fix, on the API and in the inbox page."""
    for hostile in ('"', 'care-coordination" OR WorkflowType = "x', "a\\b", "x" * 101):
        answer = await http.get("/api/approvals", params={"queue": hostile}, headers=auth(approvers["rn.kim"]))
        assert 422 == answer.status_code, (hostile, answer.text)
        assert answer.json()["detail"].startswith("queue: not a valid queue name")
        assert len(hostile) < 2 or hostile not in answer.json()["detail"]  # the value is not echoed
        assert_security_headers(answer)
    fine = await http.get("/api/approvals", params={"queue": "care-coordination"}, headers=auth(approvers["rn.kim"]))
    assert 200 == fine.status_code

    await sign_in(http, approvers["rn.kim"])
    page = await http.get("/inbox", params={"queue": '"'})
    assert 422 == page.status_code and "not a valid queue name" in page.text
    assert_security_headers(page)


@contextlib.asynccontextmanager
async def serving(app) -> AsyncIterator[str]:  # noqa: ANN001
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None,
                                           access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the test server did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        await task


async def test_an_unhandled_exception_is_a_generic_500_with_the_security_headers_and_nothing_else(
        settings, client) -> None:  # noqa: ANN001
    """A bug in a route answers a JSON 500 with every security header; neither the answer nor the log line
    carries the exception's message (which may quote member data) or a traceback."""
    app = create_app(settings, client=client)

    async def broken() -> None:
        raise RuntimeError("member Jane Q. Doe, born 1950-02-03")

    app.add_api_route("/api/broken", broken)
    with capture_logs() as logs:
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            answer = await http.get("/api/broken")
    assert 500 == answer.status_code
    assert "internal" == answer.json()["code"]
    assert "Jane" not in answer.text and "Traceback" not in answer.text and "RuntimeError" not in answer.text
    assert_security_headers(answer)
    errors = [e for e in logs if e["event"] == "api.unhandled_error"]
    assert [("RuntimeError", "/api/broken")] == [(e["error_type"], e["route"]) for e in errors]
    assert "Jane" not in str(logs)


@pytest.mark.parametrize("path", ["/api/approvals/x/y", "/no/such/page"])
async def test_plain_404s_carry_the_security_headers(http: httpx.AsyncClient, path: str) -> None:
    """Unauthenticated and unrouted answers are error answers too: the headers are on them."""
    answer = await http.get(path)
    assert answer.status_code in (401, 404)
    assert_security_headers(answer)
