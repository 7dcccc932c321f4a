"""Signed approval decisions: Ed25519 over everything a decision binds, verified where actions execute.

The API and the CLI authenticate the approver, then sign the decision with the active key of
``CARELOOM_SIGNING_KEYS``. Two places verify it:

* the ``decide`` update's validator (the early refusal), against the keys in the run's policy
  (``ApprovalRouting.decision_signatures``) and the workflow's time, before anything reaches history;
* the worker, in the activity that performs the approved write and in the ledger append
  (:func:`verify_approval`), against the keys the worker itself holds (``CARELOOM_DECISION_KEYS`` or the
  public halves of its signing keys) — never the run's input, which anyone with Temporal access writes.

The signed message is canonical JSON (sorted keys, no spaces) of::

    v, workflow_id, run_id, approval_id, digest, decision, arguments_digest, approver, role, reason, queue,
    bulk_tool, key_id, signed_at

so a signature cannot be moved to another run (a restart under the same workflow id is another run), item,
action version, decision, approver or time. Agent runs never continue-as-new, so their run id is their
first-execution run id.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from guardrails.actions import action_digest
from guardrails.approvals import ApprovalDecision, DecisionSignature
from guardrails.policy import DecisionKey
from runtime.errors import ConfigurationError, DecisionRefused
from tools.writes import ServiceEffect

__all__ = ["DecisionSigner", "generate_signing_key", "parse_public_keys", "parse_signing_keys", "sign_message",
           "signed_message", "verify_approval", "verify_decision", "verify_signed"]

MESSAGE_VERSION = 2
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
FUTURE_SKEW = timedelta(seconds=60)
DUAL_SIGNOFF_FLOOR = frozenset({"denies", "reduces", "terminates"})
"""Effects the worker never writes without two distinct approvers, whatever a run's policy says (every
program's policy asks for at least these; a pend, which delays, needs an MD)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{what} is not base64") from None


def generate_signing_key() -> str:
    """A new Ed25519 private key: base64 of its 32 raw bytes."""
    return _b64(Ed25519PrivateKey.generate().private_bytes_raw())


def public_key_of(private_b64: str) -> str:
    key = Ed25519PrivateKey.from_private_bytes(_unb64(private_b64, "signing key"))
    return _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_signing_keys(text: str, *, setting: str = "CARELOOM_SIGNING_KEYS") -> list[tuple[str, str]]:
    """``kid=BASE64,old=BASE64`` → [(kid, private)]; the first signs. Raises ConfigurationError naming the fix."""
    keys = []
    for n, part in enumerate((p.strip() for p in text.split(",") if p.strip()), start=1):
        kid, sep, value = part.partition("=")
        if not sep or not _KEY_ID.fullmatch(kid.strip()) or not value.strip():
            # Never echo the entry: it holds a secret.
            raise ConfigurationError(f"{setting}: entry {n} is not KEY_ID=BASE64 (a key id of letters, digits, "
                                     "'.', '_' or '-', then the key); generate one with "
                                     "`careloom keys signing-generate KEY_ID`")
        raw = _unb64(value, f"{setting} key {kid.strip()!r}")
        if len(raw) != 32:
            raise ConfigurationError(f"{setting} key {kid.strip()!r} is {len(raw)} bytes; an Ed25519 private key "
                                     "is 32 (generate one with `careloom keys signing-generate KEY_ID`)")
        if any(kid.strip() == known for known, _ in keys):
            raise ConfigurationError(f"{setting}: key id {kid.strip()!r} is listed twice; give every key its own id")
        keys.append((kid.strip(), value.strip()))
    if not keys:
        raise ConfigurationError(f"{setting} is empty; generate a key with `careloom keys signing-generate KEY_ID`")
    return keys


def parse_public_keys(text: str, *, setting: str = "CARELOOM_DECISION_KEYS") -> tuple[DecisionKey, ...]:
    """``kid=PUBLIC[@RETIRED_AT],...`` → the keys a run accepts; ``@2026-12-31T00:00:00Z`` retires a key then."""
    keys = []
    for n, part in enumerate((p.strip() for p in text.split(",") if p.strip()), start=1):
        kid, sep, rest = part.partition("=")
        value, _, retired = rest.partition("@")
        if not sep or not _KEY_ID.fullmatch(kid.strip()) or not value.strip():
            raise ConfigurationError(f"{setting}: entry {n} is not KEY_ID=PUBLIC_KEY[@RETIRED_AT]; "
                                     "`careloom keys public` prints them")
        if len(_unb64(value, f"{setting} key {kid.strip()!r}")) != 32:
            raise ConfigurationError(f"{setting} key {kid.strip()!r} is not a 32-byte Ed25519 public key")
        try:
            not_after = datetime.fromisoformat(retired.strip().replace("Z", "+00:00")) if retired.strip() else None
        except ValueError:
            raise ConfigurationError(f"{setting} key {kid.strip()!r}: retirement {retired!r} is not an ISO "
                                     "date-time like 2026-12-31T00:00:00Z") from None
        if not_after is not None and not_after.tzinfo is None:
            raise ConfigurationError(f"{setting} key {kid.strip()!r}: give the retirement time a UTC offset (Z)")
        if any(k.key_id == kid.strip() for k in keys):
            raise ConfigurationError(f"{setting}: key id {kid.strip()!r} is listed twice; give every key its own id")
        keys.append(DecisionKey(key_id=kid.strip(), public_key=value.strip(), not_after=not_after))
    return tuple(keys)


def signed_message(decision: ApprovalDecision, workflow_id: str, run_id: str) -> bytes:
    """The canonical bytes a signature covers (see the module docstring)."""
    signature = decision.signature
    if signature is None:
        raise ValueError("the decision carries no signature block")
    body = {
        "v": MESSAGE_VERSION, "workflow_id": workflow_id, "run_id": run_id, "approval_id": decision.approval_id,
        "digest": decision.digest, "decision": decision.decision,
        "arguments_digest": action_digest(decision.arguments) if decision.arguments is not None else None,
        "approver": decision.approver, "role": decision.role, "reason": decision.reason, "queue": decision.queue,
        "bulk_tool": decision.bulk_tool, "key_id": signature.key_id,
        "signed_at": signature.signed_at.astimezone(UTC).isoformat(),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_message(private_b64: str, message: bytes) -> str:
    return _b64(Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_b64)).sign(message))


class DecisionSigner:
    """Signs decisions with the first of its keys (the others stay for verification elsewhere)."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        if not keys:
            raise ConfigurationError("no signing key; set CARELOOM_SIGNING_KEYS")
        self.key_id, self._private = keys[0]
        self.keys = keys

    def public_keys(self) -> tuple[DecisionKey, ...]:
        return tuple(DecisionKey(key_id=kid, public_key=public_key_of(private)) for kid, private in self.keys)

    def key_for(self, accepted: list[str]) -> str:
        """The first of this signer's keys that a run accepting ``accepted`` trusts (during a rotation, a run
        started before it knows only the old key); the active key when the run names none or none match."""
        return next((kid for kid, _ in self.keys if kid in accepted), self.key_id)

    def sign(self, decision: ApprovalDecision, workflow_id: str, run_id: str, *, now: datetime | None = None,
             key_id: str | None = None) -> ApprovalDecision:
        kid = key_id or self.key_id
        private = dict(self.keys)[kid]
        at = (now or datetime.now(UTC)).replace(microsecond=0)
        unsigned = decision.model_copy(update={"signature": DecisionSignature(key_id=kid, signed_at=at, value="")})
        value = sign_message(private, signed_message(unsigned, workflow_id, run_id))
        return unsigned.model_copy(update={"signature": DecisionSignature(key_id=kid, signed_at=at, value=value)})

    @classmethod
    def from_file(cls, path: Path) -> DecisionSigner:
        """The development key in ``path``, made (mode 0600) on first use."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(f"dev-{datetime.now(UTC):%Y%m%d}={generate_signing_key()}\n")
            try:
                os.link(draft, path)  # atomic: a process that lost the race reads the winner's key
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return cls(parse_signing_keys(path.read_text().strip(), setting=str(path)))


def verify_decision(decision: ApprovalDecision, workflow_id: str, run_id: str, keys: tuple[DecisionKey, ...], *,
                    now: datetime, max_age: timedelta) -> str:
    """The key id that signed ``decision``; DecisionRefused("forbidden") naming why not.

    Deterministic (no clock but ``now``, no I/O): safe in a workflow's update validator.
    """
    key = _signature_key(decision, keys)
    signed_at = decision.signature.signed_at  # type: ignore[union-attr] - checked by _signature_key
    if signed_at > now + FUTURE_SKEW:
        raise DecisionRefused("forbidden", f"the signature is dated {signed_at.isoformat()}, in the future; "
                                           "check the signer's clock")
    if now - signed_at > max_age:
        raise DecisionRefused("forbidden", f"the signature is {int((now - signed_at).total_seconds())} s old "
                                           f"(at most {int(max_age.total_seconds())} s): a replayed or delayed "
                                           "decision; decide again")
    _check_signature(decision, key, workflow_id, run_id)
    return key.key_id


def _signature_key(decision: ApprovalDecision, keys: tuple[DecisionKey, ...]) -> DecisionKey:
    """The trusted key the decision names, unretired when it signed; DecisionRefused naming why not."""
    signature = decision.signature
    if signature is None:
        raise DecisionRefused("forbidden", "unsigned decision: this run only accepts decisions signed by the "
                                           "careloom API or CLI after they authenticate the approver")
    key = next((k for k in keys if k.key_id == signature.key_id), None)
    if key is None:
        raise DecisionRefused("forbidden", f"decision signed with unknown key {signature.key_id!r}; this run "
                                           f"accepts {', '.join(k.key_id for k in keys)}")
    signed_at = signature.signed_at
    if signed_at.tzinfo is None:
        raise DecisionRefused("forbidden", "the signature time has no UTC offset")
    if key.not_after is not None and signed_at >= key.not_after:
        raise DecisionRefused("forbidden", f"key {key.key_id!r} was retired at {key.not_after.isoformat()}; "
                                           "sign with the current key")
    return key


def _check_signature(decision: ApprovalDecision, key: DecisionKey, workflow_id: str, run_id: str) -> None:
    signature = decision.signature
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
        public.verify(base64.b64decode(signature.value, validate=True),  # type: ignore[union-attr]
                      signed_message(decision, workflow_id, run_id))
    except (InvalidSignature, binascii.Error, ValueError):
        raise DecisionRefused("forbidden", "the decision's signature does not match its content (forged, "
                                           "altered after signing, or signed for another run of this "
                                           "workflow id)") from None


def verify_signed(decision: ApprovalDecision, *, workflow_id: str, run_id: str,
                  keys: tuple[DecisionKey, ...]) -> str:
    """The key id that signed ``decision`` for this workflow and run (no age check: a worker verifies long after
    the decision was taken); DecisionRefused naming why not."""
    key = _signature_key(decision, keys)
    _check_signature(decision, key, workflow_id, run_id)
    return key.key_id


def verify_approval(approval_id: str | None, decisions: list[ApprovalDecision], *, arguments_digest: str, effect: ServiceEffect,
                    approved_by: str | None, workflow_id: str, run_id: str,
                    keys: tuple[DecisionKey, ...]) -> str | None:
    """Check, on the worker about to write, that this exact action may run; DecisionRefused naming why not.

    ``keys`` are the worker's own (configuration), ``run_id`` is the run the activity belongs to (from the
    activity's info, which the Temporal server sets). Returns the approvers (``a, b``) the proof names, or
    None for an action that ran with no human (allowed only when it is not adverse and the run claims no
    approver). The rules that hold whatever the run's input or policy says:

    * an adverse action (denies, delays, reduces or terminates a service) needs a signed MD approval of this
      exact digest, and one that denies, reduces or terminates also a second, distinct approver;
    * every decision in the proof is signed by a key the worker holds (unretired when it signed), for this
      workflow id **and run**, for the same approval item, and approves (or edits to) exactly the arguments
      being written.
    """
    if approval_id is None or not decisions:
        if effect != "none":
            raise DecisionRefused("forbidden", f"an action that {effect} a service needs a signed MD approval "
                                               "and a second reviewer; none came with it, so nothing was written")
        if approved_by is not None:
            raise DecisionRefused("forbidden", f"the run says {approved_by} approved this action but carries no "
                                               "signed decision; nothing was written")
        return None
    if not keys:
        raise DecisionRefused("forbidden", "this worker holds no decision keys (CARELOOM_DECISION_KEYS or "
                                           "CARELOOM_SIGNING_KEYS), so it cannot verify an approval")
    approvers: list[str] = []
    roles: list[str] = []
    for decision in decisions:
        if decision.approval_id != approval_id:
            raise DecisionRefused("forbidden", f"a decision for {decision.approval_id} was presented for "
                                               f"{approval_id}")
        if decision.decision not in ("approve", "edit"):
            raise DecisionRefused("forbidden", f"{decision.approval_id}: a {decision.decision} decision does not "
                                               "approve an action")
        approved = action_digest(decision.arguments) if decision.arguments is not None else decision.digest
        if approved != arguments_digest:
            raise DecisionRefused("forbidden", f"{decision.approver} approved {approved[:12]}, but the action "
                                               f"to write is {arguments_digest[:12]}; nothing was written")
        _check_signature(decision, _signature_key(decision, keys), workflow_id, run_id)
        if decision.approver in approvers:
            raise DecisionRefused("forbidden", f"{decision.approver} signed twice; two distinct people approve")
        approvers.append(decision.approver)
        roles.append(decision.role)
    who = ", ".join(f"{a} ({r})" for a, r in zip(approvers, roles, strict=True))
    if effect != "none" and "md" not in roles:
        raise DecisionRefused("forbidden", f"an action that {effect} a service needs an MD; it has {who}")
    if effect in DUAL_SIGNOFF_FLOOR and len(approvers) < 2:
        raise DecisionRefused("forbidden", f"an action that {effect} a service needs an MD and a second, "
                                           f"distinct reviewer; it has {who}")
    return ", ".join(approvers)
