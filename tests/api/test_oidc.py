"""OpenID Connect against a real local provider (tests/oidc_provider.py) and the real client code: PyJWT's
JWKS client with rotation, Authlib's authorization-code flow with PKCE, the inbox session it opens; and every
bad token refused with the reason named."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from api.identity import AuthError
from api.jwt_auth import JwtVerifier
from cli.demo import api_server
from runtime.settings import Settings
from tests.api.conftest import BROWSER_TEST
from tests.net import free_port
from tests.oidc_provider import OidcProvider, running_provider

USERS = {"nurse.kim": {"name": "Jae Kim", "roles": ["CM-Nurse"]},
         "dr.rivera": {"name": "Ana Rivera", "roles": ["CM-Staff", "CM-MedicalDirector"]},
         "no.role": {"name": "Nobody", "roles": ["Finance"]}}
ROLE_MAP = {"CM-Nurse": "rn", "CM-MedicalDirector": "md", "CM-Coordinator": "care_coordinator"}


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with running_provider(**USERS) as running:
        yield running


def verifier(provider: OidcProvider, audience: str = "careloom-inbox") -> JwtVerifier:
    return JwtVerifier(None, algorithms=["RS256"], issuer=provider.issuer, audience=audience,
                       role_map=ROLE_MAP, jwks_url=f"{provider.issuer}/jwks", leeway_seconds=30,
                       jwks_refresh_cooldown_seconds=0)  # production waits 30 s between forced refreshes


def refused(v: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        v.verify(token)
    return str(caught.value)


def test_jwks_tokens_verify_and_a_rotated_key_is_fetched_without_restart(provider: OidcProvider) -> None:
    v = verifier(provider)
    who = v.verify(provider.token("dr.rivera"))
    assert ("dr.rivera", "md", "Ana Rivera") == (who.user_id, who.role, who.display_name)  # highest mapped role
    fetched = provider.jwks_requests
    v.verify(provider.token("nurse.kim"))
    assert fetched == provider.jwks_requests  # cached
    provider.rotate()
    assert "rn" == v.verify(provider.token("nurse.kim")).role  # the new key id: the set is fetched again
    assert provider.jwks_requests == fetched + 1


def test_bad_tokens_are_refused_with_the_reason(provider: OidcProvider) -> None:
    v = verifier(provider)
    now = time.time()
    assert "expired" in refused(v, provider.token("nurse.kim", issued_at=now - 400, lifetime=300))
    assert "not valid yet" in refused(v, provider.token("nurse.kim", issued_at=now + 600))
    assert "wrong audience" in refused(v, provider.token("nurse.kim", audience="another-app"))
    assert "wrong issuer" in refused(v, provider.token("nurse.kim", issuer="https://evil.example"))
    assert "no careloom role" in refused(v, provider.token("no.role"))
    assert "no careloom role claim" in refused(v, _without_roles(provider))
    unsigned = jwt.encode({"iss": provider.issuer, "aud": "careloom-inbox", "sub": "dr.rivera", "roles": ["CM-Nurse"],
                           "exp": int(now) + 300}, None, algorithm="none")
    assert "algorithm is not allowed" in refused(v, unsigned)
    public_pem = provider.keys[0].private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    confused = _hs256_with(public_pem, provider, now)
    assert "algorithm is not allowed" in refused(v, confused)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown = jwt.encode({"iss": provider.issuer, "aud": "careloom-inbox", "sub": "dr.rivera", "roles": ["CM-Nurse"],
                          "iat": int(now), "exp": int(now) + 300}, stranger, algorithm="RS256",
                         headers={"kid": "not-published"})
    assert "unknown key id 'not-published'" in refused(v, unknown)
    forged = jwt.encode({"iss": provider.issuer, "aud": "careloom-inbox", "sub": "dr.rivera", "roles": ["CM-Nurse"],
                         "iat": int(now), "exp": int(now) + 300}, stranger, algorithm="RS256",
                        headers={"kid": provider.keys[0].kid})
    assert "bad signature" in refused(v, forged)
    assert "malformed token" in refused(v, "not.a.jwt")


def _without_roles(provider: OidcProvider) -> str:
    key = provider.keys[0]
    now = int(time.time())
    return jwt.encode({"iss": provider.issuer, "aud": "careloom-inbox", "sub": "nurse.kim", "iat": now,
                       "exp": now + 300}, key.private, algorithm="RS256", headers={"kid": key.kid})


def _hs256_with(secret: bytes, provider: OidcProvider, now: float) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': provider.keys[0].kid})}." + part({
        "iss": provider.issuer, "aud": "careloom-inbox", "sub": "dr.rivera", "roles": ["CM-MedicalDirector"],
        "iat": int(now), "exp": int(now) + 300})
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()  # PyJWT refuses to make this one itself
    return f"{signing}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def oidc_settings(provider: OidcProvider, tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, api_port=free_port(), auth_mode="jwt", jwt_issuer=provider.issuer,
                    jwt_audience="careloom-api", jwt_role_map=ROLE_MAP, oidc_issuer=provider.issuer,
                    oidc_client_id="careloom-inbox", _env_file=None)


async def test_inbox_sign_in_with_the_authorization_code_flow_and_pkce(provider: OidcProvider, client,
                                                                        tmp_path: Path) -> None:  # noqa: ANN001
    settings = oidc_settings(provider, tmp_path)
    async with api_server(settings, client) as api_url, httpx.AsyncClient(base_url=api_url) as web:
        login = await web.get("/login")
        assert 'id="oidc"' in login.text
        start = await web.get("/auth/login", params={"next": "/inbox"})
        assert 302 == start.status_code
        authorize = httpx.URL(start.headers["location"])
        query = dict(authorize.params)
        assert (f"{provider.issuer}/authorize", "S256", "code", "careloom-inbox") == (
            str(authorize.copy_with(query=None)), query["code_challenge_method"], query["response_type"],
            query["client_id"])
        assert {"state", "nonce", "code_challenge"} <= set(query) and "openid" in query["scope"].split()
        async with httpx.AsyncClient() as browser:
            form = await browser.get(str(authorize))
            fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
            back = await browser.post(f"{provider.issuer}/authorize", data={**fields, "user": "dr.rivera"})
        callback = httpx.URL(back.headers["location"])
        assert callback.path == "/auth/callback"
        async with httpx.AsyncClient(base_url=api_url) as victim:  # the link, opened in another browser
            swapped = await victim.get(f"/auth/callback?{callback.query.decode()}")
            assert 401 == swapped.status_code and "another browser" in swapped.text
            assert "careloom_session" not in victim.cookies
        # The refused attempt used the state up: sign in again in the right browser.
        start = await web.get("/auth/login", params={"next": "/inbox/x?y=1"})
        async with httpx.AsyncClient() as browser:
            form = await browser.get(start.headers["location"])
            fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
            back = await browser.post(f"{provider.issuer}/authorize", data={**fields, "user": "dr.rivera"})
        callback = httpx.URL(back.headers["location"])
        signed_in = await web.get(f"/auth/callback?{callback.query.decode()}")
        assert 200 == signed_in.status_code and 'content="0;url=/inbox/x?y=1"' in signed_in.text
        assert provider.token_requests[-1]["code_verifier"]  # PKCE verifier sent (and checked by the provider)
        inbox = await web.get("/inbox")
        assert 200 == inbox.status_code and "Ana Rivera" in inbox.text and "md" in inbox.text
        me = await web.get("/api/me")
        assert ("dr.rivera", "md") == (me.json()["user_id"], me.json()["role"])
        replay = await web.get(f"/auth/callback?{callback.query.decode()}")
        assert 401 == replay.status_code and "unknown, used" in replay.text
        evil = await web.get("/auth/login", params={"next": "/\\evil.example"})
        assert "evil" not in str(evil.headers["location"]).split("state=")[0]  # next is kept server-side, sanitised
        denied = await web.get("/auth/callback", params={"error": "access_denied", "state": "x"})
        assert 401 == denied.status_code and "access_denied" in denied.text
        # An API bearer token for careloom's API audience works too; an ID token for the inbox does not.
        api_token = provider.token("nurse.kim", audience="careloom-api")
        assert "rn" == (await web.get("/api/me", headers={"Authorization": f"Bearer {api_token}"})).json()["role"]
        id_token = provider.token("nurse.kim")
        assert 401 == (await web.get("/api/me", headers={"Authorization": f"Bearer {id_token}"})).status_code


def test_misconfigured_oidc_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CARELOOM_OIDC_CLIENT_ID"):
        Settings(state_dir=tmp_path, auth_mode="jwt", jwt_issuer="x", jwt_audience="y", oidc_issuer="http://i",
                 _env_file=None)
    with pytest.raises(ValueError, match="CARELOOM_AUTH_MODE=jwt"):
        Settings(state_dir=tmp_path, oidc_issuer="http://i", oidc_client_id="c", _env_file=None)
    with pytest.raises(ValueError, match="JWKS_URL"):
        Settings(state_dir=tmp_path, auth_mode="jwt", jwt_issuer="x", jwt_audience="y", _env_file=None)


@BROWSER_TEST[0]
@BROWSER_TEST[1]
async def test_sign_in_through_the_provider_in_a_real_browser(provider: OidcProvider, client, browser,
                                                               tmp_path: Path) -> None:  # noqa: ANN001
    settings = oidc_settings(provider, tmp_path)
    async with api_server(settings, client) as api_url:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{api_url}/inbox")
        await page.click("#oidc")
        await page.select_option("#user", "nurse.kim")
        await page.click("#sign-in")
        await page.wait_for_url(f"{api_url}/inbox")
        assert "Jae Kim" in await page.inner_text("header")
