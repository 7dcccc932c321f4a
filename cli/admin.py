"""``careloom users`` (approvers and API tokens) and ``careloom ledger`` (the decision ledger)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import settings
from cli.output import console, fail, print_json, safe
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
    console.print(safe(f"{user_id} ({role}) added. API token (shown once): {token}"), soft_wrap=True, highlight=False)


@users_app.command("rotate")
def rotate(user_id: str) -> None:
    """Issue a new token; the old one stops working."""
    token = _change_users(lambda d: d.rotate_token(user_id))
    console.print(safe(f"new API token for {user_id} (shown once): {token}"), soft_wrap=True, highlight=False)


@users_app.command("remove")
def remove(user_id: str) -> None:
    """Remove an approver (their token stops working)."""
    _change_users(lambda d: d.remove_user(user_id))
    console.print(safe(f"{user_id} removed"))


@users_app.command("list")
def list_users(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Approvers and roles (never tokens)."""
    found = _directory().users()
    if as_json:
        print_json([u.model_dump() for u in found])
    else:
        for user in found:
            console.print(safe(f"{user.user_id:<24} {user.role}"))


@ledger_app.command("verify")
def verify(chain_only: Annotated[bool, typer.Option(
               "--chain-only", help="Only the hash chain (no Temporal): skips the cross-check with histories.")] = False,
           since: Annotated[str | None, typer.Option(help="Cross-check runs started from this date (YYYY-MM-DD).")] = None,
           workflow: Annotated[str | None, typer.Option(help="Cross-check only this workflow id's runs.")] = None,
           ) -> None:
    """Recompute the hash chain and cross-check every run's history with the ledger; exit 1 on a problem.

    Problems: an altered, removed or reordered entry; a decision entry whose signature the worker could not
    verify; an entry or accepted decision in a history that the ledger lacks; a run terminated or cancelled
    with no withdrawn entry."""
    from store.connect import configured_database
    from datetime import date

    from store.ledger import DecisionLedger

    ledger = DecisionLedger(configured_database(settings()))
    checked, problems = ledger.verify()
    messages = [str(p) for p in problems]
    runs = 0
    if not chain_only:
        from cli.ledger_runs import run_records
        from history.ledger_check import check_run

        entries = ledger.entries()
        try:
            records = run_records(settings(), date.fromisoformat(since) if since else None, workflow)
        except ValueError as err:
            fail(f"{err}; --since takes a date like 2026-12-01, --workflow a workflow id")
        except Exception as err:  # noqa: BLE001 - Temporal unreachable: say so and how to skip
            fail(f"cannot read run histories from Temporal ({err.__class__.__name__}: {err}); start it or pass "
                 "--chain-only")
        runs = len(records)
        for record in records:
            messages += [f"{record.workflow_id} run {record.run_id}: {p}" for p in check_run(record, entries).problems]
    for message in messages:
        console.print(f"[red]{safe(message)}[/]")
    if messages:
        fail(f"decision ledger: {len(messages)} problem(s) in {checked} entries"
             + ("" if chain_only else f" and {runs} run histories"))
    console.print(f"decision ledger intact: {checked} entries, chain verified"
                  + ("" if chain_only else f", {runs} run histories cross-checked"))


@ledger_app.command("reconcile")
def reconcile(since: Annotated[str | None, typer.Option(help="Runs started from this date (YYYY-MM-DD).")] = None
              ) -> None:
    """Append the withdrawn entries that runs terminated through Temporal owe (who terminated them, why, and
    each approval they left open). Idempotent: an entry already appended is skipped."""
    from store.connect import configured_database
    from datetime import date

    from cli.ledger_runs import run_records
    from history.ledger_check import withdrawn_entries_owed
    from store.ledger import DecisionLedger

    ledger = DecisionLedger(configured_database(settings()))
    entries = ledger.entries()
    owed = [e for r in run_records(settings(), date.fromisoformat(since) if since else None)
            for e in withdrawn_entries_owed(r, entries)]
    added = ledger.append_new(owed)
    for entry in added:
        console.print(safe(f"{entry.workflow_id} {entry.approval_id} withdrawn by {entry.actor}: {entry.reason}"),
                      soft_wrap=True, highlight=False)
    console.print(f"{len(added)} withdrawn entr{'y' if len(added) == 1 else 'ies'} appended")


@ledger_app.command("show")
def show(workflow: Annotated[str | None, typer.Option(help="Only this workflow id.")] = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Ledger entries (who, role, when, digest, decision, reason, policy)."""
    from store.connect import configured_database
    from store.ledger import DecisionLedger

    entries = DecisionLedger(configured_database(settings())).entries(workflow)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    for e in entries:
        console.print(safe(f"{e.at.isoformat()} {e.workflow_id} {e.approval_id} {e.event} by {e.actor}"
                           f"{f' ({e.role})' if e.role else ''} digest={e.digest[:12]} {e.reason or ''}"),
                      soft_wrap=True, highlight=False)


keys_app = typer.Typer(help="Payload encryption keys and decision signing keys.", no_args_is_help=True)


@keys_app.command("generate")
def generate(key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-11.")]) -> None:
    """Print a new AES-256 key as KEY_ID=BASE64 for CARELOOM_PAYLOAD_KEYS (put it first to make it active)."""
    from runtime.codec import generate_key

    console.print(safe(f"{key_id}={generate_key()}"), soft_wrap=True, highlight=False)


@ledger_app.command("access")
def access(user: Annotated[str | None, typer.Option(help="Only this user id.")] = None,
           workflow: Annotated[str | None, typer.Option(help="Only this workflow id.")] = None,
           since: Annotated[str | None, typer.Option(help="From this date on (YYYY-MM-DD).")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The access log: who read which approval item or run (member context), when, and what they got."""
    from store.connect import configured_database
    from datetime import UTC, datetime

    from store.access_log import AccessLog

    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError:
            fail(f"--since must be a date like 2026-12-01, not {since!r}", code=2)
    entries = AccessLog(configured_database(settings())).entries(user_id=user, workflow_id=workflow, since=start)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    for e in entries:
        console.print(safe(f"{e.at.isoformat()} {e.user_id} ({e.role}) {e.action} {e.workflow_id or ''} "
                           f"{e.approval_id or ''} -> {e.outcome}"), soft_wrap=True, highlight=False)


@keys_app.command("signing-generate")
def signing_generate(key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 2026-12.")]) -> None:
    """Print a new Ed25519 decision-signing key as KEY_ID=BASE64 for CARELOOM_SIGNING_KEYS (first = active),
    and its public half for CARELOOM_DECISION_KEYS on hosts that start runs."""
    from guardrails.signing import generate_signing_key, parse_signing_keys, public_key_of

    private = generate_signing_key()
    try:
        parse_signing_keys(f"{key_id}={private}")
    except CareloomError as err:
        fail(f"{err}; pick a key id of letters, digits, '.', '_' or '-'", code=2)
    console.print(safe(f"CARELOOM_SIGNING_KEYS: {key_id}={private}"), soft_wrap=True, highlight=False)
    console.print(safe(f"CARELOOM_DECISION_KEYS: {key_id}={public_key_of(private)}"), soft_wrap=True, highlight=False)


@keys_app.command("public")
def public_keys(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The public keys new runs accept decisions from (what CARELOOM_DECISION_KEYS should hold elsewhere)."""
    from guardrails.configured import decision_signatures
    cfg = settings()
    try:
        keys = decision_signatures(cfg).keys
    except CareloomError as err:
        fail(str(err), code=2)
        return
    if as_json:
        print_json([k.model_dump(mode="json") for k in keys])
        return
    console.print(safe(",".join(f"{k.key_id}={k.public_key}" + (f"@{k.not_after.isoformat()}" if k.not_after else "")
                                for k in keys)), soft_wrap=True, highlight=False)
