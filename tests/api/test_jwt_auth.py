"""Tests for api.jwt_auth: JWTs from an identity provider, verified and mapped to careloom roles.

Real RSA keys (cryptography) and real tokens signed with PyJWT; nothing mocked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.identity import Identity
from api.jwt_auth import JwtVerifier
from runtime.errors import ConfigurationError
from tests.api.conftest import auth_error

ISSUER = "https://idp.example-health.test/realms/care"
AUDIENCE = "careloom-api"
HS_SECRET = "s" * 48  # 48 bytes: longer than the 32 HS256 requires


# --- keys and tokens ------------------------------------------------------------------------

def _rsa_key_pair() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh RSA 2048 key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


@pytest.fixture(scope="module")
def idp_keys() -> tuple[str, str]:
    return _rsa_key_pair()


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return _rsa_key_pair()


def claims(**overrides: object) -> dict[str, object]:
    """Valid claims for dr.rivera, valid for ten minutes; ``None`` removes a claim."""
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "dr.rivera", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
        "name": "Dr. Ana Rivera", "roles": ["rn"],
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def rs256(private_pem: str, **overrides: object) -> str:
    return jwt.encode(claims(**overrides), private_pem, algorithm="RS256")


@pytest.fixture
def verifier(idp_keys: tuple[str, str]) -> JwtVerifier:
    return JwtVerifier(key=idp_keys[1], algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE)


def test_valid_rs256_token_gives_highest_mapped_role(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A valid RS256 token with several roles yields the subject, its name and the highest careloom role."""
    token = rs256(idp_keys[0], roles=["rn", "offline_access", "md", "care_coordinator"])

    assert Identity(user_id="dr.rivera", role="md", display_name="Dr. Ana Rivera") == verifier.verify(token)


def test_idp_role_names_are_mapped(idp_keys: tuple[str, str]):
    """role_map turns the IdP's role names into careloom roles; a single string claim works too."""
    mapped = JwtVerifier(key=idp_keys[1], algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE,
                         roles_claim="groups", user_claim="preferred_username",
                         role_map={"Careloom.Nurse": "rn", "Careloom.Coordinator": "care_coordinator"})
    token = rs256(idp_keys[0], roles=None, groups="Careloom.Nurse", preferred_username="slee", name=None)

    assert Identity(user_id="slee", role="rn") == mapped.verify(token)


def test_token_within_leeway_is_accepted(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A token that expired 10 s ago is still accepted (default leeway 30 s, for clock skew)."""
    token = rs256(idp_keys[0], exp=int(time.time()) - 10)

    assert "dr.rivera" == verifier.verify(token).user_id


def test_expired_token_is_refused(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A token past exp (beyond the leeway) is refused, saying when it expired."""
    token = rs256(idp_keys[0], exp=1_700_000_000)

    assert "token expired at 2023-11-14T22:13:20Z: sign in again to get a fresh token" \
        == auth_error(verifier, token)


def test_wrong_audience_is_refused(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A token issued for another audience is refused as wrong audience."""
    token = rs256(idp_keys[0], aud="billing-api")

    assert ("wrong audience: the token is for 'billing-api', careloom accepts 'careloom-api'; "
            "request a token for 'careloom-api'") == auth_error(verifier, token)


def test_wrong_issuer_is_refused(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A token from another issuer is refused as wrong issuer, even though signed with the trusted key."""
    token = rs256(idp_keys[0], iss="https://evil.test")

    assert auth_error(verifier, token).startswith("wrong issuer: the token is from 'https://evil.test'")


def test_token_signed_with_another_key_is_refused(verifier: JwtVerifier, other_keys: tuple[str, str]):
    """A well-formed token signed with a different RSA key is refused as a bad signature."""
    token = rs256(other_keys[0], roles=["md"])

    assert auth_error(verifier, token).startswith("bad signature")


def test_expired_token_from_another_key_is_a_bad_signature(verifier: JwtVerifier, other_keys: tuple[str, str]):
    """The signature is checked before the claims: a forged expired token is reported as a bad signature."""
    token = rs256(other_keys[0], exp=1_700_000_000)

    assert auth_error(verifier, token).startswith("bad signature")


def test_missing_roles_claim_is_refused(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A valid token without the roles claim is refused, naming the claim."""
    token = rs256(idp_keys[0], roles=None)

    assert "token has no careloom role claim 'roles'" == auth_error(verifier, token)


def test_roles_without_a_careloom_role_are_refused(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """A token whose roles include no careloom role is refused, listing them."""
    token = rs256(idp_keys[0], roles=["offline_access", "billing"])

    assert ("token roles ['offline_access', 'billing'] include no careloom role "
            "(known: care_coordinator, md, rn): ask an administrator to assign one") == auth_error(verifier, token)


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_token_missing_a_required_claim_is_refused(verifier: JwtVerifier, idp_keys: tuple[str, str], claim: str):
    """exp, iss, aud and sub are required: a token without one is refused, naming it."""
    token = rs256(idp_keys[0], **{claim: None})

    assert auth_error(verifier, token).startswith(f"token has no '{claim}' claim")


def test_hs256_token_with_shared_secret_verifies():
    """With a shared secret and HS256, a token signed with that secret verifies."""
    verifier = JwtVerifier(key=HS_SECRET, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE)
    token = jwt.encode(claims(roles="care_coordinator", name=None), HS_SECRET, algorithm="HS256")

    assert Identity(user_id="dr.rivera", role="care_coordinator") == verifier.verify(token)


def test_hs256_token_with_another_secret_is_refused():
    """An HS256 token signed with a different secret is refused as a bad signature."""
    verifier = JwtVerifier(key=HS_SECRET, algorithms=["HS256"], issuer=ISSUER, audience=AUDIENCE)
    token = jwt.encode(claims(), "t" * 48, algorithm="HS256")

    assert auth_error(verifier, token).startswith("bad signature")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_public_key_used_as_hmac_secret_is_refused(verifier: JwtVerifier, idp_keys: tuple[str, str]):
    """Algorithm confusion: an HS256 token 'signed' with the public PEM is refused by an RS256 verifier."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims(roles=["md"])).encode())
    signature = hmac.new(idp_keys[1].encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{_b64(signature)}"

    assert auth_error(verifier, token).startswith("token algorithm is not allowed: careloom accepts RS256")


def test_unsigned_token_is_refused(verifier: JwtVerifier):
    """A token with alg 'none' (no signature) is refused."""
    token = jwt.encode(claims(roles=["md"]), None, algorithm="none")

    assert auth_error(verifier, token).startswith("token algorithm is not allowed")


def test_garbage_token_is_refused(verifier: JwtVerifier):
    """A string that is not a JWT is refused as malformed."""
    assert auth_error(verifier, "clt_notajwt").startswith("malformed token")


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"key": HS_SECRET, "algorithms": []}, "no algorithms given"),
    ({"key": HS_SECRET, "algorithms": ["none"]}, "algorithm 'none' accepts unsigned tokens"),
    ({"key": HS_SECRET, "algorithms": ["HS256", "RS256"]}, "mix shared-secret (HS*) and public-key"),
    ({"key": "short-secret", "algorithms": ["HS256"]}, "The HMAC key is 12 bytes long"),
    ({"key": HS_SECRET, "algorithms": ["RS256"]}, "not a valid RS256 key"),
    ({"key": HS_SECRET, "algorithms": ["XX999"]}, "unknown algorithm 'XX999'"),
    ({"key": HS_SECRET, "algorithms": ["HS256"], "role_map": {"Nurse": "nurse"}}, "unknown careloom roles"),
])
def test_misconfigured_verifier_is_refused_at_construction(kwargs: dict, problem: str):
    """A verifier with no or unsafe algorithms, a short secret, a mismatched key or a bad role map fails at construction."""
    with pytest.raises(ConfigurationError) as caught:
        JwtVerifier(issuer=ISSUER, audience=AUDIENCE, **kwargs)

    assert True == (problem in str(caught.value))


def test_private_key_is_refused_as_verification_key(idp_keys: tuple[str, str]):
    """Configuring the IdP's private key instead of its public key fails at construction."""
    with pytest.raises(ConfigurationError) as caught:
        JwtVerifier(key=idp_keys[0], algorithms=["RS256"], issuer=ISSUER, audience=AUDIENCE)

    assert "JWT verifier: the key is a private key; give the identity provider's public key" == str(caught.value)
