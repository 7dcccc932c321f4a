"""Record text reaches the terminal as text: `careloom approvals show` and `history audit` print a discharge
disposition holding rich markup and a raw OSC 8 escape literally, as a real process on a (forced) terminal."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from rich.console import Console

from cli.output import plain, safe
from tests.cli import careloom, clean_env
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.databases import session_env
from tests.fhir_factory import HIGH_RISK, make_member

# A FHIR code has no spaces; this one closes a tag nobody opened (rich raised MarkupError) and opens a link.
HOSTILE = "[/bold][link=https://evil.example]call-us[/link]"
OSC8 = "\x1b]8;"


async def cli(client, settings, *args: str) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    """The CLI on a forced terminal, in a thread: this test's event loop runs the worker that answers it."""
    env = clean_env(TEMPORAL_ADDRESS=client.service_client.config.target_host, CARELOOM_LOG_LEVEL="WARNING",
                    FORCE_COLOR="1", COLUMNS="400", **session_env(settings))
    return await asyncio.to_thread(careloom, env, *args, timeout=180)


async def test_approvals_show_and_history_audit_print_hostile_record_text_literally(
        start_run: StartRun, store, client, settings, tmp_path: Path) -> None:  # noqa: ANN001
    """Before: `approvals show` crashed on the markup (exit 1, MarkupError); a link would have been an OSC 8
    hyperlink. Now both commands exit 0 and print the code as it is in the record."""
    member = make_member(None, **HIGH_RISK)
    stay = next(r for r in member.resources if r["resourceType"] == "Encounter" and r["id"] == member.encounter_id)
    stay["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] = HOSTILE
    store.put_many(member.resources)
    handle = await start_run(member, policy=ALWAYS_ASK)
    item = (await wait_for_status(handle, lambda s: len(s.pending_approvals) >= 1)).pending_approvals[0]
    assert f"disposition={HOSTILE}" in item.evidence  # the record's text really is in what the CLI shows

    shown = await cli(client, settings, "approvals", "show", handle.id, item.approval_id)
    assert 0 == shown.returncode, shown.stderr[-2000:]
    assert HOSTILE in _text(shown.stdout) and OSC8 not in shown.stdout

    out = tmp_path / "export"
    exported = await cli(client, settings, "history", "export", "--out", str(out), "-w", handle.id)
    assert 0 == exported.returncode, exported.stderr[-2000:]
    audited = await cli(client, settings, "history", "audit", str(out / f"{handle.id}.json"), "--no-ledger")
    assert 0 == audited.returncode, audited.stderr[-2000:]
    assert HOSTILE in _text(audited.stdout) and OSC8 not in audited.stdout


def _text(output: str) -> str:
    """The characters a person sees: ANSI colour sequences (which FORCE_COLOR adds) removed."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def test_safe_and_plain_keep_markup_literal_and_drop_terminal_control_sequences() -> None:
    """Markup and a raw escape sequence (which rich passes through) come out as harmless text."""
    console = Console(record=True, force_terminal=True, width=200)
    raw = "x\x1b]8;;https://evil.example\x1b\\y\x07 [/bold] [red]z[/]"
    console.print(f"[bold]label[/] {safe(raw)}")
    console.print(plain(raw))
    text = console.export_text()
    assert ["label x]8;;https://evil.example\\y [/bold] [red]z[/]", "x]8;;https://evil.example\\y [/bold] [red]z[/]"
            ] == text.splitlines()
    rendered = Console(force_terminal=True, width=200, file=_Sink())
    rendered.print(safe(raw))
    assert "\x1b]" not in rendered.file.value and "\x07" not in rendered.file.value


class _Sink:
    def __init__(self) -> None:
        self.value = ""

    def write(self, text: str) -> int:
        self.value += text
        return len(text)

    def flush(self) -> None:
        pass


def test_a_quote_in_the_queue_filter_is_named_not_a_traceback(tmp_path: Path) -> None:
    """`approvals list --queue '"'` broke the visibility query (a ValueError traceback); it is refused first,
    naming the option and the fix, before Temporal is asked (none runs at this address)."""
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"), TEMPORAL_ADDRESS="127.0.0.1:1")
    listed = careloom(env, "approvals", "list", "--queue", '"', timeout=60)
    assert 2 == listed.returncode
    assert "--queue: not a valid queue name" in listed.stderr and "Traceback" not in listed.stderr
