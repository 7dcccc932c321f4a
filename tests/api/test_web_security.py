"""The inbox's browser-facing protections over real HTTP: server-side sessions and their clocks, CSRF on every
form, security headers, the pinned CORS origin of /codec and the body size limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.identity import Identity
from api.sessions import SessionStore
from store.connect import open_database
from tests.api.conftest import CSRF_FIELD, sign_in
from tests.databases import fresh_location


@pytest.fixture
async def web(api_url: str):  # noqa: ANN201
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as session:
        yield session


async def test_the_session_cookie_holds_no_token_and_sign_out_ends_it_at_once(web: httpx.AsyncClient,
                                                                             approvers: dict[str, str]) -> None:
    csrf = await sign_in(web, approvers["rn.kim"])
    cookie = web.cookies.get("careloom_session")
    assert cookie and approvers["rn.kim"] not in cookie and approvers["rn.kim"].split(".")[0] not in cookie
    stolen = httpx.Cookies({"careloom_session": cookie})
    async with httpx.AsyncClient(base_url=str(web.base_url), cookies=stolen) as other:
        assert 200 == (await other.get("/inbox")).status_code  # a copied cookie works... until sign-out
        out = await web.post("/logout", data={"csrf_token": csrf})
        assert 303 == out.status_code
        again = await other.get("/inbox")
        assert 303 == again.status_code and again.headers["location"].startswith("/login")
        assert 401 == (await other.get("/api/me")).status_code


async def test_a_session_ends_when_its_user_is_removed(web: httpx.AsyncClient, settings) -> None:  # noqa: ANN001
    from api.users import UserDirectory

    directory = UserDirectory(settings.users_path)
    token = directory.add_user("cc.temp", "care_coordinator")
    await sign_in(web, token)
    assert 200 == (await web.get("/inbox")).status_code
    directory.remove_user("cc.temp")
    gone = await web.get("/inbox")
    assert 303 == gone.status_code and gone.headers["location"].startswith("/login")


async def test_a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
        web: httpx.AsyncClient, approvers: dict[str, str]) -> None:
    csrf = await sign_in(web, approvers["rn.kim"])
    refused = await web.post("/logout", data={})
    assert 403 == refused.status_code and "CSRF token" in refused.text
    assert 200 == (await web.get("/inbox")).status_code  # still signed in
    decision = await web.post("/inbox/outreach-x/a1.1", data={"decision": "approve", "digest": "d" * 64,
                                                               "csrf_token": "wrong"})
    assert 403 == decision.status_code and "CSRF token" in decision.text
    api = await web.post("/api/approvals/outreach-x/a1.1/decision", json={"decision": "approve", "digest": "d" * 64})
    assert 403 == api.status_code and "X-CSRF-Token" in api.json()["detail"]
    # With the header the request gets past CSRF (and is then judged on its own: no such run).
    api = await web.post("/api/approvals/outreach-x/a1.1/decision", json={"decision": "approve", "digest": "d" * 64},
                         headers={"X-CSRF-Token": csrf})
    assert api.status_code in (404, 422), api.text


async def test_login_needs_the_forms_own_token(web: httpx.AsyncClient, approvers: dict[str, str]) -> None:
    refused = await web.post("/login", data={"token": approvers["rn.kim"], "next": "/inbox"})
    assert 403 == refused.status_code and "careloom_session" not in web.cookies
    form = await web.get("/login")
    ok = await web.post("/login", data={"token": approvers["rn.kim"], "next": "//evil.example/",
                                        "csrf_token": CSRF_FIELD.search(form.text).group(1)})
    assert 303 == ok.status_code and "/inbox" == ok.headers["location"]  # no open redirect


async def test_every_page_carries_the_security_headers(web: httpx.AsyncClient, approvers: dict[str, str]) -> None:
    await sign_in(web, approvers["rn.kim"])
    for path in ("/login", "/inbox", "/api/health", "/static/inbox.css", "/no-such-page"):
        headers = (await web.get(path)).headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp, path
        assert ("no-referrer", "nosniff", "DENY") == (headers["referrer-policy"], headers["x-content-type-options"],
                                                      headers["x-frame-options"]), path
        assert "strict-transport-security" not in headers  # development: plain HTTP on loopback
    page = (await web.get("/inbox")).text
    assert "<script" not in page and "style=" not in page and "<style" not in page


async def test_codec_cors_answers_only_the_configured_web_ui(web: httpx.AsyncClient, settings) -> None:  # noqa: ANN001
    allowed = settings.codec_cors_origins[0]
    for origin, expected in ((allowed, allowed), ("https://evil.example", None)):
        preflight = await web.options("/codec/decode", headers={"Origin": origin,
                                                                "Access-Control-Request-Method": "POST"})
        assert expected == preflight.headers.get("access-control-allow-origin"), origin
        answer = await web.post("/codec/decode", json={"payloads": []}, headers={"Origin": origin})
        assert expected == answer.headers.get("access-control-allow-origin"), origin
        assert 401 == answer.status_code  # and no session: nothing decoded
    # No other route answers a cross-origin script, not even the Web UI's origin.
    for path in ("/inbox", "/api/approvals", "/login"):
        page = await web.get(path, headers={"Origin": allowed})
        assert "access-control-allow-origin" not in page.headers, path
        preflight = await web.options("/api/approvals/bulk", headers={"Origin": allowed,
                                                                     "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers


def test_next_after_sign_in_stays_on_this_site() -> None:
    from api.routes_web import _safe_next

    assert "/inbox/wf-1/a1.1?x=1" == _safe_next("/inbox/wf-1/a1.1?x=1")
    for bad in ("//evil.example", "/\\evil.example", "/\tevil.example", "https://evil.example", "", None,
                "/inbox\n", "javascript:alert(1)"):
        assert "/inbox" == _safe_next(bad), bad


async def test_an_oversized_body_is_refused_before_any_handler(web: httpx.AsyncClient,
                                                              approvers: dict[str, str]) -> None:
    big = b"{" + b" " * (1_048_576 + 10) + b"}"
    answer = await web.post("/api/prior-auth", content=big, headers={
        "Authorization": f"Bearer {approvers['care-ops-bot']}", "Content-Type": "application/json"})
    assert 413 == answer.status_code and "over 1048576 bytes" in answer.json()["detail"]

    async def chunks():  # noqa: ANN202 - no Content-Length: counted as it streams
        for _ in range(20):
            yield b" " * 100_000

    streamed = await web.post("/api/prior-auth", content=chunks(), headers={
        "Authorization": f"Bearer {approvers['care-ops-bot']}", "Content-Type": "application/json"})
    assert 413 == streamed.status_code


def test_sessions_end_after_the_idle_and_the_absolute_timeout(tmp_path: Path) -> None:
    location = fresh_location(tmp_path, "s.db")
    store = SessionStore(open_database(location), idle=timedelta(minutes=30), absolute=timedelta(hours=8))
    t0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    who = Identity(user_id="rn.kim", role="rn")
    sid, session = store.create(who, now=t0)
    assert store.get(sid, now=t0 + timedelta(minutes=29)).identity == who
    assert store.get(sid, now=t0 + timedelta(minutes=58)) is not None  # 29 min after the last request
    assert store.get(sid, now=t0 + timedelta(minutes=89)) is None      # idle 31 min: gone
    assert store.get(sid, now=t0 + timedelta(minutes=58)) is None      # and stays gone
    sid, _ = store.create(who, now=t0)
    for minutes in range(20, 8 * 60, 20):
        assert store.get(sid, now=t0 + timedelta(minutes=minutes)) is not None
    assert store.get(sid, now=t0 + timedelta(hours=8, minutes=1)) is None  # active, but 8 h after sign-in
    assert store.get("not-a-session", now=t0) is None
    sid, _ = store.create(who, now=t0)
    stored = store.db.read(lambda db: db.rows("SELECT * FROM sessions"))
    assert 1 == len(stored) and not any(sid in str(value) for value in stored[0])  # only its hash is stored
