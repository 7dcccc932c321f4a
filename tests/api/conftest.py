"""Shared by the API tests: a real HTTP server (uvicorn on loopback) against the session's Temporal
server, its approvers, a headless browser, and :func:`auth_error` for the token verifiers."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.identity import AuthError, TokenVerifier
from api.users import UserDirectory
from cli.demo import api_server
from runtime.settings import Settings
from tests.net import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_TEST = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="Chromium is missing: install Debian's chromium (python3 bootstrap.py test does)"),
]
"""``pytestmark`` of the tests that drive a real browser."""


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def sign_in(http: httpx.AsyncClient, token: str) -> str:
    """Sign in through the login form as a browser does (its CSRF cookie and field); the session's CSRF token.

    The client keeps the session cookie for the requests that follow.
    """
    form = await http.get("/login")
    signed = await http.post("/login", data={"token": token, "next": "/inbox",
                                             "csrf_token": CSRF_FIELD.search(form.text).group(1)})
    assert 303 == signed.status_code, signed.text
    inbox = await http.get("/inbox")
    assert 200 == inbox.status_code
    return CSRF_FIELD.search(inbox.text).group(1)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http(api_url: str):  # noqa: ANN201 - a client of the test API server (prior-auth tests add a worker)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as session:
        yield session


@pytest_asyncio.fixture
async def worker_http(api_url: str, client: Client, settings: Settings, store) -> AsyncIterator[httpx.AsyncClient]:  # noqa: ANN001
    """The API, with a worker on the task queue the API starts runs on (the prior-auth tests' ``http``)."""
    from worker import build_worker

    async with build_worker(client, settings, store), httpx.AsyncClient(base_url=api_url, timeout=60) as session:
        yield session


def auth_error(verifier: TokenVerifier, token: str) -> str:
    """The message of the AuthError the verifier raises for this token."""
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return str(caught.value)


@pytest.fixture(scope="session")
def approvers(settings: Settings) -> dict[str, str]:
    """user id -> API token, in the session's users file."""
    directory = UserDirectory(settings.users_path)
    return {user: directory.add_user(user, role) for user, role in
            (("md.lee", "md"), ("rn.kim", "rn"), ("rn.ortiz", "rn"), ("cc.jones", "care_coordinator"),
             ("care-ops-bot", "rn"))}


@pytest_asyncio.fixture(scope="session")
async def api_url(settings: Settings, client: Client, approvers: dict[str, str]) -> AsyncIterator[str]:
    served = settings.model_copy(update={"api_port": free_port()})
    async with api_server(served, client) as url:
        yield url


@pytest.fixture
async def browser():  # noqa: ANN201
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"])
        yield instance
        await instance.close()
