"""``careloom users`` (approvers and API tokens) and ``careloom ledger`` (the decision ledger)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import settings
from cli.output import console, fail, print_json
from runtime.errors import CareloomError

users_app = typer.Typer(help="Approvers, their roles and API tokens (embedded identity store).",
                        no_args_is_help=True)
ledger_app = typer.Typer(help="The append-only, hash-chained decision ledger.", no_args_is_help=True)


def _directory():  # noqa: ANN202
    from api.users import UserDirectory

    return UserDirectory(settings().users_path)


def _change_users(change):  # noqa: ANN001, ANN202
    """Run one users-file change; a refused change exits 2 with the directory's message."""
    from api.users import UserDirectoryError

    try:
        return change(_directory())
    except UserDirectoryError as err:
        fail(str(err), code=2)


@users_app.command("add")
def add(user_id: str, role: Annotated[str, typer.Option(help="care_coordinator, rn or md")],
        name: Annotated[str | None, typer.Option(help="Display name.")] = None) -> None:
    """Add an approver; prints their API token once (only its hash is stored)."""
    token = _change_users(lambda d: d.add_user(user_id, role, name))
    console.print(f"{user_id} ({role}) added. API token (shown once): {token}", soft_wrap=True, highlight=False)


@users_app.command("rotate")
def rotate(user_id: str) -> None:
    """Issue a new token; the old one stops working."""
    token = _change_users(lambda d: d.rotate_token(user_id))
    console.print(f"new API token for {user_id} (shown once): {token}", soft_wrap=True, highlight=False)


@users_app.command("remove")
def remove(user_id: str) -> None:
    """Remove an approver (their token stops working)."""
    _change_users(lambda d: d.remove_user(user_id))
    console.print(f"{user_id} removed")


@users_app.command("list")
def list_users(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Approvers and roles (never tokens)."""
    found = _directory().users()
    if as_json:
        print_json([u.model_dump() for u in found])
    else:
        for user in found:
            console.print(f"{user.user_id:<24} {user.role}")


@ledger_app.command("verify")
def verify() -> None:
    """Recompute the hash chain; exit 1 if an entry was altered, removed or reordered."""
    from store.ledger import DecisionLedger

    checked, problems = DecisionLedger(settings().open_database()).verify()
    for problem in problems:
        console.print(f"[red]{problem}[/]")
    if problems:
        fail(f"decision ledger: {len(problems)} problem(s) in {checked} entries")
    console.print(f"decision ledger intact: {checked} entries, chain verified")


@ledger_app.command("show")
def show(workflow: Annotated[str | None, typer.Option(help="Only this workflow id.")] = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Ledger entries (who, role, when, digest, decision, reason, policy)."""
    from store.ledger import DecisionLedger

    entries = DecisionLedger(settings().open_database()).entries(workflow)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    for e in entries:
        console.print(f"{e.at.isoformat()} {e.workflow_id} {e.approval_id} {e.event} by {e.actor}"
                      f"{f' ({e.role})' if e.role else ''} digest={e.digest[:12]} {e.reason or ''}",
                      soft_wrap=True, highlight=False)


keys_app = typer.Typer(help="Payload encryption keys and decision signing keys.", no_args_is_help=True)


@keys_app.command("generate")
def generate(key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-11.")]) -> None:
    """Print a new AES-256 key as KEY_ID=BASE64 for CARELOOM_PAYLOAD_KEYS (put it first to make it active)."""
    from runtime.codec import generate_key

    console.print(f"{key_id}={generate_key()}", soft_wrap=True, highlight=False)


@ledger_app.command("access")
def access(user: Annotated[str | None, typer.Option(help="Only this user id.")] = None,
           workflow: Annotated[str | None, typer.Option(help="Only this workflow id.")] = None,
           since: Annotated[str | None, typer.Option(help="From this date on (YYYY-MM-DD).")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The access log: who read which approval item or run (member context), when, and what they got."""
    from datetime import UTC, datetime

    from store.access_log import AccessLog

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            fail(f"--since must be a date like 2026-12-01, not {since!r}", code=2)
    entries = AccessLog(settings().open_database()).entries(user_id=user, workflow_id=workflow, since=start)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    for e in entries:
        console.print(f"{e.at.isoformat()} {e.user_id} ({e.role}) {e.action} {e.workflow_id or ''} "
                      f"{e.approval_id or ''} -> {e.outcome}", soft_wrap=True, highlight=False)


@keys_app.command("signing-generate")
def signing_generate(key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-12.")]) -> None:
    """Print a new Ed25519 decision-signing key as KEY_ID=BASE64 for CARELOOM_SIGNING_KEYS (first = active),
    and its public half for CARELOOM_DECISION_KEYS on hosts that start runs."""
    from runtime.signing import generate_signing_key, parse_signing_keys, public_key_of

    private = generate_signing_key()
    try:
        parse_signing_keys(f"{key_id}={private}")
    except CareloomError as err:
        fail(f"{err}; pick a key id of letters, digits, '.', '_' or '-'", code=2)
    console.print(f"CARELOOM_SIGNING_KEYS: {key_id}={private}", soft_wrap=True, highlight=False)
    console.print(f"CARELOOM_DECISION_KEYS: {key_id}={public_key_of(private)}", soft_wrap=True, highlight=False)


@keys_app.command("public")
def public_keys(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The public keys new runs accept decisions from (what CARELOOM_DECISION_KEYS should hold elsewhere)."""
    cfg = settings()
    try:
        keys = cfg.decision_signatures().keys
    except CareloomError as err:
        fail(str(err), code=2)
        return
    if as_json:
        print_json([k.model_dump(mode="json") for k in keys])
        return
    console.print(",".join(f"{k.key_id}={k.public_key}" + (f"@{k.not_after.isoformat()}" if k.not_after else "")
                           for k in keys), soft_wrap=True, highlight=False)
