"""Tests for api.identity: the embedded user directory, JWT verification and bearer-header parsing.

Real files (tmp_path), real RSA keys (cryptography) and real tokens signed with PyJWT; nothing mocked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api.identity import (
    AuthError,
    Identity,
    JwtVerifier,
    TokenVerifier,
    UserDirectory,
    UserDirectoryError,
    bearer_token,
)
from runtime.errors import ConfigurationError

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


def auth_error(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return str(caught.value)


@pytest.fixture
def directory(tmp_path: Path) -> UserDirectory:
    return UserDirectory(tmp_path / "state" / "users.json")


# --- UserDirectory --------------------------------------------------------------------------

def test_added_user_token_verifies_to_their_identity(directory: UserDirectory):
    """A token returned by add_user verifies to that user's id, role and display name."""
    token = directory.add_user("dr.rivera", "md", "Dr. Ana Rivera")

    actual = directory.verify(token)

    assert Identity(user_id="dr.rivera", role="md", display_name="Dr. Ana Rivera") == actual


def test_token_has_careloom_prefix_and_256_bits(directory: UserDirectory):
    """Issued tokens are 'clt_' followed by 32 random bytes in URL-safe base64 (43 characters)."""
    token = directory.add_user("rn.lee", "rn")

    assert ("clt_", 43) == (token[:4], len(token[4:]))


def test_users_file_stores_only_the_token_digest(directory: UserDirectory):
    """The users file holds the token's SHA-256 digest in the documented format, never the token."""
    token = directory.add_user("rn.lee", "rn", "Sam Lee")

    text = directory.path.read_text()

    assert token not in text
    assert token[4:] not in text
    assert {"version": 1, "users": [{"user_id": "rn.lee", "role": "rn", "display_name": "Sam Lee",
                                     "token_sha256": hashlib.sha256(token.encode()).hexdigest()}]} \
        == json.loads(text)


def test_users_file_mode_is_0600_after_every_write(directory: UserDirectory):
    """The users file is created, and rewritten, readable and writable by its owner only (0600)."""
    directory.add_user("rn.lee", "rn")
    after_add = stat.S_IMODE(directory.path.stat().st_mode)
    directory.rotate_token("rn.lee")
    after_rotate = stat.S_IMODE(directory.path.stat().st_mode)

    assert (0o600, 0o600) == (after_add, after_rotate)


def test_writes_leave_no_temporary_files(directory: UserDirectory):
    """Atomic writes leave only the users file and its lock file in the folder."""
    directory.add_user("rn.lee", "rn")
    directory.rotate_token("rn.lee")

    actual = sorted(p.name for p in directory.path.parent.iterdir())

    assert ["users.json", "users.json.lock"] == actual


def test_rotated_token_replaces_the_old_one(directory: UserDirectory):
    """After rotate_token the new token verifies and the old one is refused as unknown or revoked."""
    old = directory.add_user("rn.lee", "rn")

    new = directory.rotate_token("rn.lee")

    assert "rn.lee" == directory.verify(new).user_id
    assert auth_error(directory, old).startswith("unknown or revoked token")


def test_rotation_by_another_process_takes_effect_at_once(directory: UserDirectory):
    """A directory object that already verified a token refuses it once another instance rotated it."""
    server_side = UserDirectory(directory.path)
    old = directory.add_user("rn.lee", "rn")
    assert "rn.lee" == server_side.verify(old).user_id

    directory.rotate_token("rn.lee")

    assert auth_error(server_side, old).startswith("unknown or revoked token")


def test_removed_user_is_gone_and_token_refused(directory: UserDirectory):
    """remove_user drops the user from get and users and their token stops verifying."""
    token = directory.add_user("rn.lee", "rn")
    directory.add_user("cc.kim", "care_coordinator")

    directory.remove_user("rn.lee")

    assert (None, ["cc.kim"]) == (directory.get("rn.lee"), [u.user_id for u in directory.users()])
    assert auth_error(directory, token).startswith("unknown or revoked token")


def test_users_are_listed_by_id(directory: UserDirectory):
    """users() lists every user, ordered by user id, with role and display name."""
    directory.add_user("rn.lee", "rn", "Sam Lee")
    directory.add_user("cc.kim", "care_coordinator")

    assert [Identity(user_id="cc.kim", role="care_coordinator"),
            Identity(user_id="rn.lee", role="rn", display_name="Sam Lee")] == directory.users()


def test_missing_file_is_an_empty_directory(directory: UserDirectory):
    """Before any user is added there are no users and no file."""
    assert ([], None, False) == (directory.users(), directory.get("rn.lee"), directory.path.exists())


def test_duplicate_user_is_refused_and_keeps_first_token(directory: UserDirectory):
    """Adding an existing user id fails with a clear error and the existing token keeps working."""
    token = directory.add_user("rn.lee", "rn")

    with pytest.raises(UserDirectoryError) as caught:
        directory.add_user("rn.lee", "md")

    assert "user 'rn.lee' already exists" in str(caught.value)
    assert Identity(user_id="rn.lee", role="rn") == directory.verify(token)


@pytest.mark.parametrize("user_id", ["A.rivera", "x", "dr rivera", "-lead", ".hidden", "a" * 65, "../etc", "é.a", ""])
def test_invalid_user_id_is_refused(directory: UserDirectory, user_id: str):
    """User ids outside ^[a-z0-9][a-z0-9._-]{1,63}$ are refused, naming the rule, and nothing is written."""
    with pytest.raises(UserDirectoryError) as caught:
        directory.add_user(user_id, "rn")

    assert (True, False) == ("invalid user id" in str(caught.value), directory.path.exists())


def test_unknown_role_is_refused(directory: UserDirectory):
    """A role that is not a careloom role is refused, listing the valid ones."""
    with pytest.raises(UserDirectoryError) as caught:
        directory.add_user("rn.lee", "nurse")  # type: ignore[arg-type]

    assert "unknown role 'nurse': use one of care_coordinator, rn, md" == str(caught.value)


def test_rotate_or_remove_of_unknown_user_is_refused(directory: UserDirectory):
    """rotate_token and remove_user of an unknown user raise an error naming the user and the file."""
    directory.add_user("rn.lee", "rn")
    messages = []
    for operation in (directory.rotate_token, directory.remove_user):
        with pytest.raises(UserDirectoryError) as caught:
            operation("nobody")
        messages.append(str(caught.value))

    expected = f"no user 'nobody' in {directory.path}; add it first with add_user"
    assert [expected, expected] == messages


@pytest.mark.parametrize("token", [
    "clt_" + secrets.token_urlsafe(32),  # well-formed, never issued
    "",
    "not-a-careloom-token",
])
def test_unknown_token_is_refused(directory: UserDirectory, token: str):
    """A token the directory never issued, or not a careloom token at all, is refused with AuthError."""
    directory.add_user("rn.lee", "rn")

    message = auth_error(directory, token)

    assert True == (message.startswith("unknown or revoked token") or message.startswith("not a careloom API token"))


def test_altered_token_is_refused(directory: UserDirectory):
    """A real token with one character changed does not verify."""
    token = directory.add_user("rn.lee", "rn")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert auth_error(directory, forged).startswith("unknown or revoked token")


def test_stored_digest_is_not_a_token(directory: UserDirectory):
    """Presenting the stored digest itself (as read from the file) does not authenticate."""
    directory.add_user("rn.lee", "rn")
    digest = json.loads(directory.path.read_text())["users"][0]["token_sha256"]

    assert auth_error(directory, "clt_" + digest).startswith("unknown or revoked token")


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "is not valid JSON"),
    ('{"version": 1, "users": [], "admins": []}', "admins: Extra inputs are not permitted"),
    ('{"version": 2, "users": []}', "version: Input should be 1"),
    ('{"version": 1, "users": [{"user_id": "rn.lee", "role": "rn", "token_sha256": "abc"}]}',
     "users.0.token_sha256"),
    ('{"version": 1, "users": [{"user_id": "rn.lee", "role": "nurse", "token_sha256": "' + "0" * 64 + '"}]}',
     "users.0.role"),
    ('{"version": 1, "users": [{"user_id": "rn.lee", "role": "rn", "token_sha256": "' + "0" * 64
     + '", "password": "x"}]}', "users.0.password"),
])
def test_corrupt_users_file_gives_error_naming_the_file(tmp_path: Path, content: str, problem: str):
    """A users file that is not JSON, has unknown fields or invalid values raises an error naming the file and the problem."""
    path = tmp_path / "users.json"
    path.write_text(content)
    directory = UserDirectory(path)

    with pytest.raises(UserDirectoryError) as caught:
        directory.verify("clt_" + secrets.token_urlsafe(32))

    message = str(caught.value)
    assert (True, True) == (f"users file {path}" in message, problem in message)


def test_duplicate_entries_in_users_file_are_refused(tmp_path: Path):
    """A hand-edited users file listing one user twice is refused, naming the file and the user."""
    path = tmp_path / "users.json"
    entry = {"user_id": "rn.lee", "role": "rn", "display_name": None, "token_sha256": "1" * 64}
    path.write_text(json.dumps({"version": 1, "users": [entry, {**entry, "token_sha256": "2" * 64}]}))

    with pytest.raises(UserDirectoryError) as caught:
        UserDirectory(path).users()

    assert f"users file {path} lists user 'rn.lee' twice; keep one entry" == str(caught.value)


def test_both_verifiers_satisfy_the_protocol(directory: UserDirectory, verifier: JwtVerifier):
    """UserDirectory and JwtVerifier are both TokenVerifiers."""
    assert (True, True) == (isinstance(directory, TokenVerifier), isinstance(verifier, TokenVerifier))


# --- JwtVerifier ----------------------------------------------------------------------------

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


# --- bearer_token ---------------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_authorization_header_is_refused(header: str | None):
    """No Authorization header asks for a bearer token."""
    with pytest.raises(AuthError) as caught:
        bearer_token(header)

    assert "missing bearer token: send Authorization: Bearer <token>" == str(caught.value)


@pytest.mark.parametrize("header", ["Basic ZHI6cGFzcw==", "clt_s3cretvalue", "Token clt_s3cretvalue"])
def test_other_authorization_scheme_is_refused_without_echoing_it(header: str):
    """A header that is not 'Bearer <token>' is refused, and the message does not repeat the credential."""
    with pytest.raises(AuthError) as caught:
        bearer_token(header)

    message = str(caught.value)
    assert ("authorization scheme is not Bearer: send Authorization: Bearer <token>", False) \
        == (message, "s3cret" in message or "ZHI6" in message)


@pytest.mark.parametrize("header", ["Bearer", "Bearer   ", "Bearer two words"])
def test_bearer_without_a_single_token_is_refused(header: str):
    """'Bearer' with no token, or with more than one word, is refused."""
    with pytest.raises(AuthError) as caught:
        bearer_token(header)

    assert True == str(caught.value).endswith("send Authorization: Bearer <token>")


@pytest.mark.parametrize("header", ["Bearer clt_abc-_9", "bearer clt_abc-_9", "BEARER   clt_abc-_9  "])
def test_bearer_token_is_extracted_case_insensitively(header: str):
    """The scheme is matched case-insensitively and surrounding spaces are ignored."""
    assert "clt_abc-_9" == bearer_token(header)


def test_bearer_token_accepts_a_jwt():
    """A JWT (three base64url parts) passes through unchanged."""
    token = jwt.encode(claims(), HS_SECRET, algorithm="HS256")

    assert token == bearer_token(f"Bearer {token}")
