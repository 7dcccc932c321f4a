"""An inbox session opened through the identity provider lasts no longer than the ID token it was opened with:
the role it carries came from that token. Against the local OIDC provider (tests/oidc_provider.py), over HTTP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.identity import Identity
from api.sessions import SessionStore
from cli.demo import api_server
from store.connect import open_database
from tests.api.test_oidc import USERS, oidc_settings
from tests.databases import fresh_location
from tests.oidc_provider import OidcProvider

ID_TOKEN_SECONDS = 4


class ShortTokens(OidcProvider):
    """The test provider, issuing ID tokens that expire after a few seconds (real IdPs: minutes to an hour)."""

    def token(self, user: str, **options: Any) -> str:  # noqa: ANN401
        options.setdefault("lifetime", ID_TOKEN_SECONDS)
        return super().token(user, **options)


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    running = ShortTokens(users=dict(USERS))
    running.start()
    try:
        yield running
    finally:
        running.stop()


async def sign_in(web: httpx.AsyncClient, provider: OidcProvider, user: str) -> None:
    start = await web.get("/auth/login", params={"next": "/inbox"})
    async with httpx.AsyncClient() as browser:
        form = await browser.get(start.headers["location"])
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
        back = await browser.post(f"{provider.issuer}/authorize", data={**fields, "user": user})
    signed_in = await web.get(f"/auth/callback?{httpx.URL(back.headers['location']).query.decode()}")
    assert 200 == signed_in.status_code, signed_in.text


async def test_an_idp_session_ends_with_its_id_token_and_the_next_sign_in_reads_the_new_role(
        provider: OidcProvider, client, tmp_path: Path) -> None:  # noqa: ANN001
    """Before: the session kept the MD role for 8 h after the IdP withdrew it. Now it ends when the ID token
    expires, and signing in again gives the role the IdP says now."""
    settings = oidc_settings(provider, tmp_path)
    async with api_server(settings, client) as api_url, httpx.AsyncClient(base_url=api_url) as web:
        signed_at = time.time()
        await sign_in(web, provider, "dr.rivera")
        cookie = web.cookies.get("careloom_session")
        assert cookie is not None
        me = (await web.get("/api/me")).json()
        assert ("dr.rivera", "md") == (me["user_id"], me["role"])
        provider.users["dr.rivera"] = {"name": "Ana Rivera", "roles": ["CM-Nurse"]}  # the IdP demotes her
        await asyncio.sleep(max(0.0, signed_at + ID_TOKEN_SECONDS + 1 - time.time()))
        web.cookies.set("careloom_session", cookie)  # a browser that kept the cookie anyway
        assert 401 == (await web.get("/api/me")).status_code
        page = await web.get("/inbox")
        assert 303 == page.status_code and page.headers["location"].startswith("/login")
        web.cookies.clear()
        await sign_in(web, provider, "dr.rivera")
        assert "rn" == (await web.get("/api/me")).json()["role"]


def test_the_cap_is_bound_to_the_session_id_and_cannot_be_moved(tmp_path: Path) -> None:
    """The expiry rides in the session id, whose hash is the row's key: a cookie with a later expiry is an
    unknown session, and a session past its cap is deleted."""
    store = SessionStore(open_database(fresh_location(tmp_path, "s.db")), idle=timedelta(minutes=30),
                         absolute=timedelta(hours=8))
    t0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    who = Identity(user_id="dr.rivera", role="md")
    sid, session = store.create(who, now=t0, expires_at=t0 + timedelta(minutes=5))
    assert t0 + timedelta(minutes=5) == session.expires_at
    assert who == store.get(sid, now=t0 + timedelta(minutes=4)).identity
    random_part, _, _ = sid.partition(".")
    later = f"{random_part}.{int((t0 + timedelta(hours=8)).timestamp())}"
    assert store.get(later, now=t0 + timedelta(minutes=6)) is None
    assert store.get(sid, now=t0 + timedelta(minutes=5)) is None
    assert store.get(sid, now=t0 + timedelta(minutes=1)) is None  # deleted, not merely refused
    plain, _ = store.create(who, now=t0)  # a users-file session: no cap in its id, the 8 h clock as before
    assert "." not in plain and store.get(plain, now=t0 + timedelta(minutes=20)) is not None
