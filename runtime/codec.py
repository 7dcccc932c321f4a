"""Payload encryption: an AES-256-GCM Temporal payload codec with key ids and rotation.

Every payload the client, worker, CLI or replayer writes is encrypted with the
active key; the key id travels in the payload metadata, so after a rotation
new writes use the new key and old histories still decrypt with the old one.
A payload whose key is not configured, or that does not authenticate, fails
with an error naming the key id and the fix.

Without ``CARELOOM_PAYLOAD_KEYS`` the embedded development stack still
encrypts: :meth:`PayloadEncryptionCodec.from_key_file` makes a key on first use
in ``<state_dir>/payload-keys`` (mode 0600), the way the development signing
key is made, so model-written text and member data are not plaintext in the
embedded server's ``temporal.db``. Every process of that stack (server, worker,
CLI, API, demo) shares the state folder, so they share the key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from runtime.errors import CareloomError, ConfigurationError

__all__ = ["DEVELOPMENT_KEY_FILE", "ENCODING", "PayloadEncryptionCodec", "PayloadKeyError", "development_keys",
           "generate_key", "parse_keys"]

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_NONCE = 12
DEVELOPMENT_KEY_FILE = "payload-keys"
"""The development payload key's file in the state folder (used when CARELOOM_PAYLOAD_KEYS is unset)."""


class PayloadKeyError(CareloomError):
    """A payload cannot be decrypted: unknown key id or wrong key material."""


def generate_key() -> str:
    """A new random 256-bit key, base64 (for CARELOOM_PAYLOAD_KEYS)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def parse_keys(spec: str) -> tuple[dict[str, bytes], str]:
    """``kid=base64key,kid2=base64key`` → (keys, active key id); the first key is the active one."""
    keys: dict[str, bytes] = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        kid, sep, material = part.partition("=")
        if not sep or not kid:
            raise ConfigurationError("CARELOOM_PAYLOAD_KEYS must look like 'key-id=BASE64,old-id=BASE64'")
        try:
            raw = base64.b64decode(material, validate=True)
        except ValueError:
            raise ConfigurationError(f"payload key {kid!r} is not valid base64") from None
        if len(raw) != 32:
            raise ConfigurationError(f"payload key {kid!r} has {len(raw)} bytes; AES-256 needs 32 "
                                     "(make one with `careloom keys generate`)")
        keys[kid] = raw
    if not keys:
        raise ConfigurationError("CARELOOM_PAYLOAD_KEYS is set but names no key")
    return keys, next(iter(keys))


def development_keys(path: Path) -> str:
    """The key spec in ``path`` (``kid=BASE64``), made (mode 0600) on first use.

    Made beside and then linked into place, so processes starting together agree on one key: the one that
    loses the race reads the winner's.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"dev-{datetime.now(UTC):%Y%m%d}={generate_key()}\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


class PayloadEncryptionCodec(PayloadCodec):
    @classmethod
    def from_key_file(cls, path: Path) -> PayloadEncryptionCodec:
        """The codec of the development key in ``path`` (:func:`development_keys`); more keys may be added to
        the file as ``kid=BASE64`` entries, comma-separated, the first one encrypting."""
        try:
            keys, active = parse_keys(development_keys(path))
        except ConfigurationError as err:
            raise ConfigurationError(f"{path}: {err}; delete the file to make a new development key (histories "
                                     "written with the old one can no longer be read)") from None
        return cls(keys, active)

    def __init__(self, keys: dict[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise ConfigurationError(f"active payload key {active_key_id!r} is not among the configured keys")
        self._keys = {kid: AESGCM(material) for kid, material in keys.items()}
        self._active = active_key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._keys[self._active]
        out = []
        for payload in payloads:
            nonce = os.urandom(_NONCE)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self._active.encode())
            out.append(Payload(metadata={"encoding": ENCODING, KEY_ID: self._active.encode()}, data=nonce + sealed))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decode_sync(payloads)

    def decode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt without an event loop (history audit and what-if read files synchronously)."""
        out = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                out.append(payload)  # written before encryption was turned on
                continue
            kid = payload.metadata.get(KEY_ID, b"").decode()
            cipher = self._keys.get(kid)
            if cipher is None:
                raise PayloadKeyError(f"payload encrypted with key {kid!r}, which is not configured: add it to "
                                      "CARELOOM_PAYLOAD_KEYS (keep retired keys there to read old histories); a "
                                      "dev-... key is the development key in <state_dir>/payload-keys of the "
                                      "stack that wrote it: set CARELOOM_STATE_DIR to that folder")
            try:
                plain = cipher.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], kid.encode())
            except InvalidTag:
                raise PayloadKeyError(f"payload does not decrypt with key {kid!r}: the key material is wrong or "
                                      "the payload was altered") from None
            out.append(Payload.FromString(plain))
        return out
