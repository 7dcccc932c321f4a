#!/usr/bin/env python3
"""Benchmark: wall time of `careloom outreach status` (and `runs list`) as a user runs it, before and after.

For each source tree (``--before <rev>``, exported with ``git archive`` into a scratch folder, and this
working tree), in a fresh state folder: ``careloom demo --exit`` (the sample's 15 runs), then ``careloom up``
(embedded server, worker, API), one run for an unknown member (it FAILS), then ``outreach status`` timed
``--repeat`` times on a completed run, a parked run and the failed run; then ``up`` is stopped, a bare dev
server (no worker) is started on the same database and the completed run's status is timed once more (a
query needs a worker: before, the command waited for Temporal's 30 s query timeout).

    .venv/bin/python bench/cli_status_bench.py
    .venv/bin/python bench/cli_status_bench.py --before c8a5a91 --repeat 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from guardrails.configured import outreach_policy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.net import free_port  # noqa: E402

BEFORE = "c8a5a91"  # main before issue 21's CLI work


def _export(rev: str) -> Path:
    """The repository at ``rev`` in a scratch folder (nothing in this working tree or its index changes)."""
    folder = Path(tempfile.mkdtemp(prefix=f"careloom-{rev}-"))
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _careloom(tree: Path, env: dict[str, str], *args: str, timeout: float = 300) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return time.perf_counter() - began, done


async def _start_failing_run(env: dict[str, str]) -> str:
    """A run for a member the records store does not hold (it FAILS in its first step), started past the CLI."""
    from runtime.settings import Settings
    from runtime.temporal_client import connect
    from workflows.outreach_client import start_outreach

    settings = Settings(state_dir=Path(env["CARELOOM_STATE_DIR"]), embedded_port=int(env["CARELOOM_EMBEDDED_PORT"]),
                        _env_file=None)
    client = await connect(settings)
    handle, _ = await start_outreach(client, member_id="bench-unknown", encounter_id="bench-none",
                                     policy=outreach_policy(settings), task_queue=settings.task_queue,
                                     salt=settings.pseudonym_salt.get_secret_value(), tool_attempts=1)
    for _ in range(100):
        if (await handle.describe()).status is not None and (await handle.describe()).close_time is not None:
            break
        await asyncio.sleep(0.2)
    return handle.id


def _timed(tree: Path, env: dict[str, str], workflow_id: str, repeat: int) -> dict:
    times, last = [], None
    for _ in range(repeat):
        seconds, last = _careloom(tree, env, "outreach", "status", workflow_id, timeout=120)
        times.append(seconds)
    first_line = (last.stdout.strip().splitlines() or last.stderr.strip().splitlines() or [""])[0]
    return {"median_s": round(statistics.median(times), 2), "max_s": round(max(times), 2),
            "exit": last.returncode, "first_line": first_line[:160]}


def bench(tree: Path, label: str, repeat: int) -> dict:
    state = Path(tempfile.mkdtemp(prefix="careloom-status-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOM_", "TEMPORAL_"))}
    env.update(CARELOOM_STATE_DIR=str(state / "state"), CARELOOM_EMBEDDED_PORT=str(port),
               CARELOOM_EMBEDDED_UI_PORT=str(free_port()), CARELOOM_API_PORT=str(free_port()),
               CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING")
    out: dict = {"tree": label}
    try:
        _, demo = _careloom(tree, env, "demo", "--exit", "--json")
        runs = json.loads(demo.stdout)["runs"]
        completed = next(r["workflow_id"] for r in runs if r["status"] == "completed")
        parked = next(r["workflow_id"] for r in runs if r["status"] == "awaiting_approval")
        up = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=tree, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            for _ in range(120):  # the worker polls once `approvals list` answers
                if _careloom(tree, env, "approvals", "list", "--json")[1].returncode == 0:
                    break
                time.sleep(0.5)
            failed = asyncio.run(_start_failing_run(env))
            out["completed"] = _timed(tree, env, completed, repeat)
            out["parked"] = _timed(tree, env, parked, repeat)
            out["failed"] = _timed(tree, env, failed, repeat)
            seconds, listed = _careloom(tree, env, "runs", "list")
            out["runs_list"] = {"s": round(seconds, 2), "exit": listed.returncode}
        finally:
            os.killpg(up.pid, signal.SIGTERM)
            up.wait(timeout=60)
        server = subprocess.Popen([str(Path(sys.executable).parent / "temporal"), "server", "start-dev",
                                   "--db-filename", str(state / "state" / "temporal.db"), "--ip", "127.0.0.1",
                                   "--port", str(port), "--headless", "--log-level", "error"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(3)
            out["completed_no_worker"] = _timed(tree, env, completed, 1)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help="git revision of the 'before' tree")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-after", action="store_true")
    args = parser.parse_args()
    results = []
    if not args.only_after:
        before = _export(args.before)
        try:
            results.append(bench(before, f"before ({args.before})", args.repeat))
        finally:
            shutil.rmtree(before, ignore_errors=True)
    results.append(bench(ROOT, "after (working tree)", args.repeat))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
