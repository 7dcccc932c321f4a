"""Who is calling: approvers authenticate at the API boundary.

A request carries ``Authorization: Bearer <token>``; :func:`bearer_token` takes the
token out of the header and a :class:`TokenVerifier` turns it into an
:class:`Identity` (user id and careloom role) or raises :class:`AuthError`.

Two verifiers:

* :class:`UserDirectory`, the embedded default: users, roles and hashed API
  tokens in one JSON file (``<state_dir>/users.json``), managed by an operator.
* :class:`JwtVerifier`, for production: signed bearer tokens (JWTs) issued by the
  health plan's identity provider, verified with its public key (or a shared
  secret for HS256), the IdP's role names mapped to careloom roles.

Every :class:`AuthError` message names the problem and the fix and never
contains the token itself, so it is safe to log and to return to the caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import jwt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guardrails.policy import Role, max_role
from runtime.errors import CareloomError, ConfigurationError

try:  # POSIX: serialise read-modify-write of the users file across processes.
    import fcntl
except ImportError:  # pragma: no cover - not POSIX; the in-process lock still applies
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "AuthError",
    "Identity",
    "JwtVerifier",
    "TOKEN_PREFIX",
    "TokenVerifier",
    "USER_ID_PATTERN",
    "UserDirectory",
    "UserDirectoryError",
    "bearer_token",
]

ROLES: tuple[str, ...] = get_args(Role)
"""The careloom roles, least to most authority."""

USER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
"""User ids in the embedded directory: lower case, 2-64 characters, no spaces."""

TOKEN_PREFIX = "clt_"
"""Prefix of careloom API tokens, so a leaked one is recognisable (secret scanners, logs)."""

_BEARER_FIX = "send Authorization: Bearer <token>"
_SHA256_HEX = r"^[0-9a-f]{64}$"


class Identity(BaseModel):
    """An authenticated caller: who they are and the careloom role they act in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = Field(min_length=1)
    role: Role
    display_name: str | None = None


class AuthError(CareloomError):
    """The caller could not be authenticated (HTTP 401). The message names the problem and the fix."""


class UserDirectoryError(CareloomError):
    """The users file is unreadable or invalid, or an operator's change to it was refused."""


@runtime_checkable
class TokenVerifier(Protocol):
    """Turns a bearer token into an :class:`Identity`."""

    def verify(self, token: str) -> Identity:
        """The identity the token stands for; raises :class:`AuthError` if it stands for none."""
        ...


def bearer_token(authorization_header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive, RFC 6750).

    Raises :class:`AuthError` for a missing or empty header, another scheme, or a
    malformed token. Messages never repeat the header: it may hold a credential.
    """
    header = (authorization_header or "").strip()
    if not header:
        raise AuthError(f"missing bearer token: {_BEARER_FIX}")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError(f"authorization scheme is not Bearer: {_BEARER_FIX}")
    token = token.strip()
    if not token:
        raise AuthError(f"empty bearer token: {_BEARER_FIX}")
    if not re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        raise AuthError(f"malformed bearer token (spaces or characters not allowed in a token): {_BEARER_FIX}")
    return token


# --- the embedded user directory ----------------------------------------------------------


class _UserRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=USER_ID_PATTERN.pattern)
    role: Role
    display_name: str | None = None
    token_sha256: str = Field(pattern=_SHA256_HEX)


class _UsersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    users: list[_UserRecord]


def _token_digest(token: str) -> str:
    # Plain SHA-256, not a password hash (argon2, scrypt, bcrypt): a careloom token is
    # 32 random bytes (secrets.token_urlsafe(32), 256 bits), so guessing it from its digest
    # is infeasible however fast the hash is. Slow hashes defend low-entropy passwords;
    # here they would only add tens of milliseconds to every request.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class UserDirectory:
    """The embedded default :class:`TokenVerifier`: users, roles and API tokens in a JSON file.

    File format (``<state_dir>/users.json`` by default)::

        {"version": 1, "users": [{"user_id": "dr.rivera", "role": "md",
                                  "display_name": "Dr. Rivera", "token_sha256": "<hex>"}]}

    Tokens (``clt_`` + 32 random bytes, URL-safe base64) are shown once, when issued
    by :meth:`add_user` or :meth:`rotate_token`; only their SHA-256 digests are stored.
    Writes are atomic (temporary file + ``os.replace``), the file has mode 0600, and a
    lock file beside it serialises changes made by several processes. Every read
    checks the file's bytes, so a change made by another process (a rotation, a
    removal) takes effect on the next request; parsing happens only when they changed.
    A missing file is an empty directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # guards the parsed cache
        self._write_lock = threading.Lock()  # serialises read-modify-write in this process
        self._cached_raw: bytes | None = None
        self._cached: tuple[list[_UserRecord], dict[str, _UserRecord]] = ([], {})

    # -- reading ---------------------------------------------------------------------------

    def _load(self) -> tuple[list[_UserRecord], dict[str, _UserRecord]]:
        """The records, and an index by token digest; re-parsed only when the file changed."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            raise UserDirectoryError(
                f"cannot read the users file {self.path}: {exc.strerror or exc}; "
                "check that it is a readable file") from exc
        with self._lock:
            if raw == self._cached_raw:
                return self._cached
        records = self._parse(raw) if raw else []
        by_digest = {record.token_sha256: record for record in records}
        with self._lock:
            self._cached_raw, self._cached = raw, (records, by_digest)
        return records, by_digest

    def _parse(self, raw: bytes) -> list[_UserRecord]:
        fix = "fix or restore it (format: {\"version\": 1, \"users\": [...]})"
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserDirectoryError(f"users file {self.path} is not valid JSON ({exc}); {fix}") from None
        try:
            parsed = _UsersFile.model_validate(document)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
                for error in exc.errors(include_url=False, include_input=False))
            raise UserDirectoryError(f"users file {self.path} is invalid ({problems}); {fix}") from None
        seen_ids: set[str] = set()
        seen_digests: set[str] = set()
        for record in parsed.users:
            if record.user_id in seen_ids:
                raise UserDirectoryError(
                    f"users file {self.path} lists user '{record.user_id}' twice; keep one entry")
            if record.token_sha256 in seen_digests:
                raise UserDirectoryError(
                    f"users file {self.path} has the same token digest for two users "
                    f"(one is '{record.user_id}'); rotate their tokens")
            seen_ids.add(record.user_id)
            seen_digests.add(record.token_sha256)
        return parsed.users

    @staticmethod
    def _identity(record: _UserRecord) -> Identity:
        return Identity(user_id=record.user_id, role=record.role, display_name=record.display_name)

    def get(self, user_id: str) -> Identity | None:
        """The user with this id, or ``None``."""
        records, _ = self._load()
        return next((self._identity(r) for r in records if r.user_id == user_id), None)

    def users(self) -> list[Identity]:
        """All users, by user id."""
        records, _ = self._load()
        return [self._identity(r) for r in sorted(records, key=lambda r: r.user_id)]

    def verify(self, token: str) -> Identity:
        """The user whose API token this is; :class:`AuthError` for an unknown or revoked token.

        Lookup is a dict lookup by the token's SHA-256 digest rather than
        ``hmac.compare_digest`` over every stored digest: any timing difference of the
        lookup can reveal at most something about a stored *digest*, and a digest of a
        256-bit random token does not help anyone find the token. A corrupt users file
        raises :class:`UserDirectoryError` (a server fault, not the caller's).
        """
        if not token.startswith(TOKEN_PREFIX):
            raise AuthError(
                f"not a careloom API token (they start with '{TOKEN_PREFIX}'); "
                "use the token issued when your user was added or its token rotated")
        _, by_digest = self._load()
        record = by_digest.get(_token_digest(token))
        if record is None:
            raise AuthError("unknown or revoked token: ask an administrator for a new token (rotate_token)")
        return self._identity(record)

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes: a lock in this process and, on POSIX, ``flock`` on ``<file>.lock``."""
        with self._write_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if fcntl is None:  # pragma: no cover
                yield
                return
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    def _write(self, records: list[_UserRecord]) -> None:
        """Replace the file atomically with these records (mode 0600)."""
        document = _UsersFile(version=1, users=sorted(records, key=lambda r: r.user_id))
        data = (json.dumps(document.model_dump(mode="json"), indent=2) + "\n").encode("utf-8")
        # mkstemp creates the file with mode 0600, in the same folder so os.replace is atomic.
        fd, tmp_name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o600)
            os.replace(tmp_name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _records_for_update(self) -> list[_UserRecord]:
        records, _ = self._load()
        return list(records)

    def _require(self, records: list[_UserRecord], user_id: str) -> int:
        for index, record in enumerate(records):
            if record.user_id == user_id:
                return index
        raise UserDirectoryError(f"no user '{user_id}' in {self.path}; add it first with add_user")

    def add_user(self, user_id: str, role: Role, display_name: str | None = None) -> str:
        """Add a user and return their API token; it is shown this once and stored only as a digest."""
        if not isinstance(user_id, str) or not USER_ID_PATTERN.fullmatch(user_id):
            raise UserDirectoryError(
                f"invalid user id {user_id!r}: use 2-64 characters of a-z, 0-9, '.', '_' or '-', "
                "starting with a letter or digit (e.g. 'dr.rivera')")
        if role not in ROLES:
            raise UserDirectoryError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        if display_name is not None:
            display_name = display_name.strip()
            if not display_name or len(display_name) > 200 or not display_name.isprintable():
                raise UserDirectoryError(
                    "invalid display name: give 1-200 printable characters, or none")
        with self._locked():
            records = self._records_for_update()
            if any(record.user_id == user_id for record in records):
                raise UserDirectoryError(
                    f"user '{user_id}' already exists in {self.path}; "
                    "use rotate_token for a new token or remove_user first")
            token = _new_token()
            records.append(_UserRecord(user_id=user_id, role=role, display_name=display_name,
                                       token_sha256=_token_digest(token)))
            self._write(records)
        return token

    def rotate_token(self, user_id: str) -> str:
        """Issue a new API token for the user; the old one stops working at once."""
        with self._locked():
            records = self._records_for_update()
            index = self._require(records, user_id)
            token = _new_token()
            records[index] = records[index].model_copy(update={"token_sha256": _token_digest(token)})
            self._write(records)
        return token

    def remove_user(self, user_id: str) -> None:
        """Remove the user; their token stops working at once."""
        with self._locked():
            records = self._records_for_update()
            del records[self._require(records, user_id)]
            self._write(records)


# --- signed tokens from an identity provider ----------------------------------------------

_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
_SIGN_IN_AGAIN = "sign in again to get a fresh token"


def _algorithm_family(algorithm: str) -> str:
    return "hmac" if algorithm.upper().startswith("HS") else "public-key"


class JwtVerifier:
    """The production :class:`TokenVerifier`: JWTs signed by the health plan's identity provider.

    ``key`` is the IdP's public key as PEM (RS256, PS256, ES256, ...) or a shared
    secret (HS256/384/512, at least as long as the hash). A token must be signed
    with one of ``algorithms`` and carry ``exp``, ``iss`` (= ``issuer``), ``aud``
    (containing ``audience``) and ``sub``; clocks may differ by ``leeway_seconds``.
    The user id comes from ``user_claim``, the display name from ``name_claim``.
    ``roles_claim`` (a string or a list of strings) holds the IdP's role names;
    ``role_map`` maps them to careloom roles (default: the names ``care_coordinator``,
    ``rn`` and ``md`` themselves). Unknown names are ignored; if several map, the
    highest role (``ROLE_RANK``) wins; if none does, the token is refused.

    A misconfiguration (no algorithm, ``none``, a private key, a short secret, a key
    that does not fit an algorithm, symmetric and public-key algorithms mixed) raises
    :class:`~runtime.errors.ConfigurationError` here, not on the first request.
    """

    def __init__(
        self,
        key: str,
        algorithms: list[str],
        issuer: str,
        audience: str,
        roles_claim: str = "roles",
        user_claim: str = "sub",
        leeway_seconds: int = 30,
        role_map: Mapping[str, Role] | None = None,
        name_claim: str | None = "name",
    ) -> None:
        if not algorithms:
            raise ConfigurationError("JWT verifier: no algorithms given; name the IdP's, e.g. ['RS256']")
        if any(a.lower() == "none" for a in algorithms):
            raise ConfigurationError("JWT verifier: algorithm 'none' accepts unsigned tokens; remove it")
        if len({_algorithm_family(a) for a in algorithms}) > 1:
            # A public key used as an HMAC secret is the classic algorithm-confusion attack.
            raise ConfigurationError(
                f"JWT verifier: algorithms {algorithms} mix shared-secret (HS*) and public-key "
                "algorithms; configure one kind")
        if not key:
            raise ConfigurationError("JWT verifier: no key; give the IdP's public key (PEM) or the HS256 secret")
        prepared: Any = None
        for algorithm in algorithms:
            try:
                implementation = jwt.get_algorithm_by_name(algorithm)
            except NotImplementedError:
                raise ConfigurationError(
                    f"JWT verifier: unknown algorithm {algorithm!r}; use e.g. RS256, ES256 or HS256") from None
            try:
                prepared = implementation.prepare_key(key)
            except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
                wanted = ("a PEM public key" if _algorithm_family(algorithm) == "public-key"
                          else "a shared secret")
                raise ConfigurationError(
                    f"JWT verifier: the key is not a valid {algorithm} key ({exc}); "
                    f"give {wanted} for {algorithm}") from None
            if hasattr(prepared, "private_bytes"):
                raise ConfigurationError(
                    "JWT verifier: the key is a private key; give the identity provider's public key")
            too_short = implementation.check_key_length(prepared)
            if too_short:
                raise ConfigurationError(f"JWT verifier: {too_short} Use a longer key.")
        if not issuer:
            raise ConfigurationError("JWT verifier: no issuer; give the IdP's issuer URL (the 'iss' claim)")
        if not audience:
            raise ConfigurationError("JWT verifier: no audience; give careloom's audience (the 'aud' claim)")
        if leeway_seconds < 0:
            raise ConfigurationError("JWT verifier: leeway_seconds must not be negative")
        mapping = dict(role_map) if role_map is not None else {role: role for role in ROLES}
        bad = {name: role for name, role in mapping.items() if role not in ROLES}
        if bad:
            raise ConfigurationError(
                f"JWT verifier: role_map maps to unknown careloom roles {bad}; use {', '.join(ROLES)}")
        self._key = prepared  # parsed once, not on every request
        self.algorithms = list(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self.user_claim = user_claim
        self.name_claim = name_claim
        self.leeway_seconds = leeway_seconds
        self.role_map: dict[str, Role] = mapping

    def verify(self, token: str) -> Identity:
        """The identity in a valid token; :class:`AuthError` with the precise reason otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(self._reason(token, exc)) from None
        return Identity(user_id=self._user_id(claims), role=self._role(claims),
                        display_name=self._display_name(claims))

    def _reason(self, token: str, exc: jwt.PyJWTError) -> str:
        # Claims read without verification are used only for errors raised *after* the
        # signature checked out (PyJWT verifies the signature before the claims).
        if isinstance(exc, jwt.ExpiredSignatureError):
            expired = _unverified_claims(token).get("exp")
            when = (datetime.fromtimestamp(expired, UTC).isoformat().replace("+00:00", "Z")
                    if isinstance(expired, int | float) else "an earlier time")
            return f"token expired at {when}: {_SIGN_IN_AGAIN}"
        if isinstance(exc, jwt.InvalidAudienceError):
            return (f"wrong audience: the token is for {_unverified_claims(token).get('aud')!r}, "
                    f"careloom accepts {self.audience!r}; request a token for {self.audience!r}")
        if isinstance(exc, jwt.InvalidIssuerError):
            return (f"wrong issuer: the token is from {_unverified_claims(token).get('iss')!r}, "
                    f"careloom trusts {self.issuer!r}; sign in with that identity provider")
        if isinstance(exc, jwt.InvalidSignatureError):
            return ("bad signature: the token was not signed with the identity provider's key "
                    "careloom trusts (forged, altered, or from another key); " + _SIGN_IN_AGAIN)
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return (f"token has no {exc.claim!r} claim; careloom requires "
                    f"{', '.join(_REQUIRED_CLAIMS)}: configure the identity provider to include it")
        if isinstance(exc, jwt.ImmatureSignatureError | jwt.InvalidIssuedAtError):
            return "token is not valid yet (nbf/iat in the future): check the clocks, then retry"
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return (f"token algorithm is not allowed: careloom accepts {', '.join(self.algorithms)}; "
                    "use a token from the configured identity provider")
        if isinstance(exc, jwt.exceptions.InvalidSubjectError):
            return "token 'sub' claim is not a string: configure the identity provider"
        if isinstance(exc, jwt.DecodeError):
            return f"malformed token ({exc}): send the JWT exactly as the identity provider issued it"
        return f"invalid token ({exc}): {_SIGN_IN_AGAIN}"

    def _user_id(self, claims: dict[str, Any]) -> str:
        user_id = claims.get(self.user_claim)
        if not isinstance(user_id, str) or not user_id.strip():
            raise AuthError(
                f"token has no user claim {self.user_claim!r} (a non-empty string): "
                "configure the identity provider to include it")
        return user_id

    def _role(self, claims: dict[str, Any]) -> Role:
        if self.roles_claim not in claims:
            raise AuthError(f"token has no careloom role claim {self.roles_claim!r}")
        value = claims[self.roles_claim]
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise AuthError(
                f"token role claim {self.roles_claim!r} must be a string or a list of strings: "
                "configure the identity provider")
        roles = [self.role_map[name] for name in names if name in self.role_map]
        if not roles:
            raise AuthError(
                f"token roles {names} include no careloom role (known: {', '.join(sorted(self.role_map))}): "
                "ask an administrator to assign one")
        return max_role(roles)  # not None: roles is not empty

    def _display_name(self, claims: dict[str, Any]) -> str | None:
        if self.name_claim is None:
            return None
        name = claims.get(self.name_claim)
        return name if isinstance(name, str) and name.strip() else None


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
