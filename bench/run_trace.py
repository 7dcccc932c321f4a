#!/usr/bin/env python3
"""Measure: the files a newcomer reads to follow one run (issue 22, "imports in one direction").

For each program, ONE run end to end in this process, on a scratch stack (embedded dev server, records
store, a careloom worker), after one untraced warm-up run of the same program (so import-time work is not
counted):

* outreach: an HL7 ADT^A03 sent over a real MLLP socket to the ADT listener (``serve_adt``) up to the run's
  result (offline planner; the sample member's run completes without approval: LACE 5, every action within
  policy, the contact window all day, no quality sampling; were it to park, each pending item is approved with
  a signed decision as ``tests/deciding.py`` sends it, and the count is printed);
* prior-auth: a PAS request Bundle submitted through ``submit_prior_auth`` (what POST /api/prior-auth calls)
  up to the result with its ClaimResponse (a lumbar MRI whose notes meet every criterion: no human).

While the run is in flight every Python ``call`` event (``sys.setprofile`` and ``threading.setprofile``: the
client's loop, the activity threads and the workflow task threads) whose code object's file is in the
careloom source tree (the root, without ``.venv``, ``tests/`` and ``bench/``) is recorded, module bodies
(``<module>``) excepted. The call-ordered file sequence, consecutive repeats collapsed, gives: distinct files,
distinct top-level folders (files at the root, ``worker.py``, count as the folder "."), and folder switches
(adjacent pairs of the collapsed sequence whose folders differ).

``threading.setprofile`` reaches only threads started after it (Python < 3.12 has no way to profile running
threads), so the traced run gets threads of its own: a new worker (new activity and workflow-task pools), a
new default executor on the loop, and a listener whose parse pool is new (one more parse thread than the
warm-up's: the pool is cached per size).

    .venv/bin/python bench/run_trace.py
    .venv/bin/python bench/run_trace.py --program prior-auth --json
    .venv/bin/python bench/run_trace.py --root /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import types
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ("outreach", "prior-auth")
_EXCLUDED = (".venv", "tests", "bench")


def careloom(root: Path) -> types.SimpleNamespace:
    """Every careloom import this bench uses, in one place (modules move in the refactor of issue 22)."""
    sys.path.insert(0, str(root))
    from bench.common import scratch_stack
    from feeds.adt_listener import serve_adt
    from guardrails.approvals import ApprovalDecision
    from guardrails.configured import prior_auth_policy
    from runtime.logging import configure_logging
    from tests.deciding import TEST_SIGNING_KEYS, decide
    from tests.feeds.hl7_messages import adt, frame
    from tests.fhir_factory import make_member
    from tests.pas_factory import make_pas_request
    from tools.criteria import criteria_for
    from worker import build_worker
    from workflows.outreach_client import outreach_workflow_id
    from workflows.prior_auth_client import submit_prior_auth
    from workflows.agent_run import activity_queues

    return types.SimpleNamespace(**{k: v for k, v in locals().items() if k != "root"})


class CallTrace:
    """The careloom files of every Python call, in call order, across threads."""

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve()) + "/"
        self.files: list[str] = []
        self.threads: set[int] = set()
        self._where: dict[types.CodeType, str | None] = {}

    def _file_of(self, code: types.CodeType) -> str | None:
        if code.co_name == "<module>" or not code.co_filename.startswith(self.root):
            return None
        relative = code.co_filename[len(self.root):]
        return None if relative.split("/", 1)[0] in _EXCLUDED else relative

    def _profile(self, frame: types.FrameType, event: str, _arg: object) -> None:
        if event != "call":
            return
        code = frame.f_code
        try:
            where = self._where[code]
        except KeyError:
            where = self._where[code] = self._file_of(code)
        if where is not None:
            self.files.append(where)  # list.append is atomic under the GIL
            self.threads.add(threading.get_ident())

    def start(self) -> None:
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)

    def stop(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]  # threads started later are not profiled


def _get(result: Any, name: str) -> Any:  # noqa: ANN401 - a typed handle's model or an untyped one's dict
    return result[name] if isinstance(result, dict) else getattr(result, name)


def folder_of(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else "."


def summarise(program: str, files: list[str], threads: int, note: str) -> dict[str, Any]:
    collapsed = [f for i, f in enumerate(files) if i == 0 or f != files[i - 1]]
    first_seen = list(dict.fromkeys(collapsed))
    folders = list(dict.fromkeys(folder_of(f) for f in first_seen))
    switches = sum(folder_of(a) != folder_of(b) for a, b in zip(collapsed, collapsed[1:], strict=False))
    return {"program": program, "run": note, "distinct_files": len(first_seen), "distinct_folders": len(folders),
            "folder_switches": switches, "collapsed_sequence_length": len(collapsed), "call_events": len(files),
            "threads_seen": threads, "folders": folders, "files": first_seen}


async def _finish(c: types.SimpleNamespace, client: Any, handle: Any) -> tuple[Any, int]:  # noqa: ANN401
    """The run's result; each pending approval it parks on is approved (signed, as tests/deciding.py does)."""
    result_task = asyncio.ensure_future(handle.result())
    decided: set[str] = set()
    while not result_task.done():
        try:
            pending = await handle.query("approvals")
        except Exception:  # noqa: BLE001 - the run may close between the check and the query
            pending = []
        for item in pending:
            key = f"{item['approval_id']}/{len(item.get('signoffs') or [])}"
            if key in decided:
                continue
            decided.add(key)
            await c.decide(client, handle.id, c.ApprovalDecision(
                approval_id=item["approval_id"], digest=item["digest"], decision="approve",
                approver=f"bench.reviewer{len(decided)}", role=item["required_role"]))
        await asyncio.wait({result_task}, timeout=0.5)
    return result_task.result(), len(decided)


async def outreach_run(c: types.SimpleNamespace, stack: Any, settings: Any, *, trace: CallTrace | None  # noqa: ANN401
                       ) -> str:
    # The A03 is for the stay the factory stored (admitted acutely: LACE can be scored); an A03 for a visit the
    # records do not have makes an Encounter without its acuity, and the run parks for approvals.
    member = c.make_member(stack.store)
    visit = member.encounter_id
    workflow_id = c.outreach_workflow_id(member.member_id, visit, settings.pseudonym_salt.get_secret_value())
    server = await c.serve_adt(settings, stack.client, stack.store, host="127.0.0.1", port=0)
    host, port = server.sockets[0].getsockname()[:2]
    try:
        async with c.build_worker(stack.client, settings, stack.store):
            if trace:
                trace.start()
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(c.frame(c.adt("A03", member.member_id, visit)))
                await writer.drain()
                ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 60)
                writer.close()
                if b"MSA|AA" not in ack:
                    raise RuntimeError(f"the listener did not accept the A03: {ack[:200]!r}")
                handle = stack.client.get_workflow_handle(workflow_id)
                result, decisions = await _finish(c, stack.client, handle)
            finally:
                if trace:
                    trace.stop()
    finally:
        server.close()
        await server.wait_closed()
    return f"status={_get(result, 'status')} planner={_get(result, 'planner')} approvals_decided={decisions}"


async def prior_auth_run(c: types.SimpleNamespace, stack: Any, settings: Any, *,  # noqa: ANN401
                         trace: CallTrace | None) -> str:
    request = c.make_pas_request(stack.store)  # MRI_NOTES_MET: every criterion met, approved without a human
    async with c.build_worker(stack.client, settings, stack.store):
        if trace:
            trace.start()
        try:
            handle, started, _ = await c.submit_prior_auth(
                stack.client, stack.store, request.bundle, criteria=c.criteria_for(settings),
                policy=c.prior_auth_policy(settings), task_queue=settings.task_queue,
                salt=settings.pseudonym_salt.get_secret_value(), initiated_by="bench",
                tool_attempts=settings.tool_attempts, queues=c.activity_queues(settings))
            if not started:
                raise RuntimeError("the request joined an existing run")
            result, decisions = await _finish(c, stack.client, handle)
        finally:
            if trace:
                trace.stop()
    if not _get(result, "claim_response"):
        raise RuntimeError(f"no ClaimResponse: status {_get(result, 'status')}")
    return (f"status={_get(result, 'status')} determination={_get(result, 'determination')} "
            f"claim_response=yes approvals_decided={decisions}")


async def main(root: Path, programs: list[str], as_json: bool) -> None:
    c = careloom(root)
    c.configure_logging("ERROR")
    runs: dict[str, Callable[..., Awaitable[str]]] = {"outreach": outreach_run, "prior-auth": prior_auth_run}
    reports = []
    async with c.scratch_stack() as (base, stack):
        for program in programs:
            # The contact window all day and no holidays: the run's messages go out whatever the hour. No quality
            # sampling: it picks 5% of actions by a digest of the (random) workflow id, which adds a ledger write
            # to some runs and not others.
            common = {"signing_keys": c.TEST_SIGNING_KEYS, "contact_window_start_hour": 0,
                      "contact_window_end_hour": 24, "holiday_calendar": "none", "quality_sample_rate": 0.0}
            warm = base.model_copy(update={**common, "task_queue": f"trace-warm-{uuid.uuid4().hex[:8]}"})
            traced = base.model_copy(update={**common, "task_queue": f"trace-{uuid.uuid4().hex[:8]}",
                                             "adt_parse_threads": base.adt_parse_threads + 1})
            await runs[program](c, stack, warm, trace=None)
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(thread_name_prefix="trace-default"))
            trace = CallTrace(root)
            note = await runs[program](c, stack, traced, trace=trace)
            reports.append(summarise(program, trace.files, len(trace.threads), note))
    if as_json:
        print(json.dumps({"root": str(root), "programs": reports}, indent=2))
        return
    for r in reports:
        print(f"{r['program']}: {r['run']}")
        print(f"  distinct files {r['distinct_files']}, distinct folders {r['distinct_folders']} "
              f"({', '.join(r['folders'])}), folder switches {r['folder_switches']}")
        print(f"  ({r['call_events']} call events, {r['collapsed_sequence_length']} after collapsing repeats, "
              f"{r['threads_seen']} threads)")
        print("  files, first seen first:")
        for path in r["files"]:
            print(f"    {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the careloom tree to import and count (default: "
                        "the one holding this file)")
    parser.add_argument("--program", choices=PROGRAMS, action="append", help="one program (repeatable); default: both")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    asyncio.run(main(args.root.resolve(), args.program or list(PROGRAMS), args.json))
