"""The embedded users store: users, roles and hashed API tokens in one JSON file.

:class:`UserDirectory` is the default :class:`~api.identity.TokenVerifier`
(``<state_dir>/users.json``), managed by an operator with ``careloom users``.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.identity import ROLES, AuthError, Identity
from guardrails.policy import Role
from runtime.errors import CareloomError

try:  # POSIX: serialise read-modify-write of the users file across processes.
    import fcntl
except ImportError:  # pragma: no cover - not POSIX; the in-process lock still applies
    fcntl = None  # type: ignore[assignment]

__all__ = ["TOKEN_PREFIX", "USER_ID_PATTERN", "UserDirectory", "UserDirectoryError"]

USER_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
"""User ids in the embedded directory: lower case, 2-64 characters, no spaces."""

TOKEN_PREFIX = "clt_"
"""Prefix of careloom API tokens, so a leaked one is recognisable (secret scanners, logs)."""

_SHA256_HEX = r"^[0-9a-f]{64}$"


class UserDirectoryError(CareloomError):
    """The users file is unreadable or invalid, or an operator's change to it was refused."""


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
