#!/usr/bin/env python3
"""Benchmark: careloom outreach runs vs the same activity sequence in a bare Temporal workflow.

Both run in one process against one embedded dev server (SQLite persistence),
on the same synthetic members (LACE 5: task, message and care plan, all within
policy), so the difference is what careloom adds: the LangGraph agent,
guardrails, status publishing and search attributes.

With ``--database-url postgresql://...`` careloom's runs are measured twice in the same process: on the
embedded SQLite store and on a scratch PostgreSQL database on that server (created and dropped), with the
ratio PostgreSQL / SQLite. CPU per run is this process's (worker and client); the database server's own CPU
is not in it.

With ``--with-model`` careloom's runs on SQLite are measured a second time with a learned readmission model
served (a champion and a shadow challenger trained on 400 simulated members and registered in a scratch
registry): the difference in CPU per run is what scoring adds (features read from the store, two scores, the
champion's SHAP explanation, the two RiskAssessment records).

    .venv/bin/python bench/outreach_bench.py --runs 200
    .venv/bin/python bench/outreach_bench.py --runs 200 --with-model
    .venv/bin/python bench/outreach_bench.py --runs 200 --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from temporalio.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import POLICY, BareInput, BareOutreachBaseline, bare_worker  # noqa: E402
from bench.common import history_size, scratch_database, scratch_stack  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from store.connect import configured_database  # noqa: E402
from store.sql_records import SqlCareRecordStore  # noqa: E402
from tests.fhir_factory import make_member  # noqa: E402
from worker import build_hosts, build_worker  # noqa: E402
from workflows.outreach_client import start_outreach  # noqa: E402


async def _measure(name: str, start_all, client: Client, runs: int) -> dict[str, float]:  # noqa: ANN001
    cpu0, wall0 = time.process_time(), time.perf_counter()
    handles = await start_all()
    results = await asyncio.gather(*(h.result() for h in handles))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    events, size = await history_size(client, [h.id for h in handles[: min(50, runs)]])
    return {"name": name, "runs": len(results), "runs_per_s": runs / wall, "cpu_ms_per_run": 1000 * cpu / runs,
            "events_per_run": events, "history_bytes_per_run": size, "wall_s": wall}


def served_model(folder: Path) -> object:
    """A scorer serving a champion and a shadow challenger trained on simulated members (issue 26)."""
    from learning.dataset import build_dataset, generate, locate
    from learning.model import train
    from learning.registry import GateResult, ModelRegistry
    from learning.serving import scorer_from_registry

    data = folder / "data"
    generate(locate(data), 400, 11)
    build_dataset(locate(data))
    registry = ModelRegistry(folder / "state")
    for seed in (11, 12):
        train(data, folder / f"model-{seed}", seed=seed, version=f"bench-{seed}")
        registry.register(folder / f"model-{seed}")
    registry.promote("readmission-30d-hgb", "1", gate=lambda _: GateResult(True, "bench: no gate"))
    registry.promote("readmission-30d-hgb", "2", shadow=True)
    return scorer_from_registry(folder / "state")


async def main(runs: int, database_url: str | None, with_model: bool = False) -> None:
    configure_logging("WARNING", "json")
    async with scratch_stack() as (settings, stack):
        client, store = stack.client, stack.store
        salt = settings.pseudonym_salt.get_secret_value()
        bare_members = [make_member(store) for _ in range(runs)]
        queue = f"bench-{uuid.uuid4().hex[:8]}"

        async def careloom_on(records: SqlCareRecordStore, name: str, scorer: object = None) -> dict[str, float]:
            members = [make_member(records) for _ in range(runs)]
            ours = f"{queue}-{name.replace(' ', '-').replace(',', '')}"
            hosts = build_hosts(settings, records, scorer=scorer) if scorer is not None else None

            async def start_careloom():  # noqa: ANN202
                return [(await start_outreach(client, member_id=m.member_id, encounter_id=m.encounter_id,
                                              policy=POLICY, task_queue=ours, tool_attempts=1, salt=salt))[0]
                        for m in members]

            async with build_worker(client, settings, records, task_queue=ours, hosts=hosts):
                return await _measure(f"careloom on {name}", start_careloom, client, runs)

        async def start_bare():  # noqa: ANN202
            return [await client.start_workflow(BareOutreachBaseline.run, BareInput(
                member_id=m.member_id, encounter_id=m.encounter_id), id=f"bare-{m.member_id}",
                task_queue=queue + "-bare") for m in bare_members]

        async with bare_worker(client, settings, store, queue + "-bare"):
            bare = await _measure("bare workflow, 8 activities", start_bare, client, runs)
        rows = [bare, await careloom_on(store, "SQLite")]
        if with_model:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="careloom-bench-model-") as folder:
                scorer = served_model(Path(folder))
                modelled = await careloom_on(store, "SQLite, model", scorer)
        with scratch_database(database_url) as url:
            if url is not None:
                postgres = SqlCareRecordStore(configured_database(settings.model_copy(update={"database_url": url})))
                rows.append(await careloom_on(postgres, "PostgreSQL"))
                postgres.db.close()
    print(f"{runs} runs each, one process, embedded dev server (its own SQLite), 2 cores\n")
    print(f"{'variant':<34}{'runs/s':>9}{'CPU ms/run':>12}{'events/run':>12}{'history B/run':>15}")
    for row in rows:
        print(f"{row['name']:<34}{row['runs_per_s']:>9.1f}{row['cpu_ms_per_run']:>12.1f}"
              f"{row['events_per_run']:>12.1f}{row['history_bytes_per_run']:>15.0f}")
    if with_model:
        added = modelled["cpu_ms_per_run"] - rows[1]["cpu_ms_per_run"]
        print(f"{modelled['name']:<34}{modelled['runs_per_s']:>9.1f}{modelled['cpu_ms_per_run']:>12.1f}"
              f"{modelled['events_per_run']:>12.1f}{modelled['history_bytes_per_run']:>15.0f}")
        print(f"learned model (champion + shadow + explanation + records): {added:+.1f} CPU ms per run "
              f"(ratio {modelled['cpu_ms_per_run'] / rows[1]['cpu_ms_per_run']:.2f}); history "
              f"{modelled['history_bytes_per_run'] - rows[1]['history_bytes_per_run']:+.0f} B per run")
    for row, base in [(rows[1], bare), *([(rows[2], rows[1])] if len(rows) > 2 else [])]:
        label = f"ratio {row['name'].removeprefix('careloom on ')} / {base['name'].split(',')[0].removeprefix('careloom on ')}"
        print(f"{label:<34}"
              f"{row['runs_per_s'] / base['runs_per_s']:>9.2f}{row['cpu_ms_per_run'] / base['cpu_ms_per_run']:>12.2f}"
              f"{row['events_per_run'] / base['events_per_run']:>12.2f}"
              f"{row['history_bytes_per_run'] / base['history_bytes_per_run']:>15.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--database-url", help="A PostgreSQL server (postgresql://USER@HOST:PORT/DB) to also run "
                        "careloom on, in a scratch database created and dropped there.")
    parser.add_argument("--with-model", action="store_true", help="Also measure careloom on SQLite with a learned "
                        "readmission model served (champion + shadow), trained on simulated members.")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.database_url, args.with_model))
