#!/usr/bin/env python3
"""Measure: quality-measure evaluation speed, in memory and on PostgreSQL (issue 24, "Scale").

A seeded generator makes a population whose records exercise every shipped measure: about half are diabetics
(an HbA1c in the period or none), half hypertensives (a blood-pressure panel or none), the women 52-74 with or
without a mammogram, and one in five with an inpatient discharge (with or without a medication reconciliation
within 30 days). Every member is evaluated against every measure:

* in memory (``tools.quality_measures.evaluate_member``: the engine's ELM runtime over the member's records);
* on PostgreSQL (``load_members_postgres`` + ``evaluate_population_postgres``: the engine compiles each
  definition to SQL over FHIR JSONB and runs it per member), on a sample of the population (it is slower), in a
  dedicated schema dropped at the end.

Printed: members, measure evaluations, members/s and evaluations/s of each path, the ratio PostgreSQL / memory,
and that both paths agree member by member on the sample (mismatches must be 0). ``--json`` prints the same.

    .venv/bin/python bench/gaps_bench.py                                 # 2,000 members, 200 on PostgreSQL
    .venv/bin/python bench/gaps_bench.py --members 20000 --postgres-sample 500 --json
    .venv/bin/python bench/gaps_bench.py --database-url ''               # memory only
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.quality_measures import (  # noqa: E402
    MemberResult,
    drop_postgres_schema,
    evaluate_member,
    evaluate_population_postgres,
    load_measures,
    load_members_postgres,
    measurement_period,
)

CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def _day(rng: random.Random, start: date, end: date) -> str:
    return (start + timedelta(days=rng.randrange((end - start).days + 1))).isoformat()


def _when(rng: random.Random) -> str:
    return f"{_day(rng, date(2026, 1, 5), date(2026, 12, 20))}T{rng.randrange(8, 17):02d}:00:00Z"


def member(rng: random.Random, mid: str) -> list[dict[str, Any]]:
    """One generated member's FHIR R4 records (ids unique to the member)."""
    age = rng.randrange(20, 86)
    gender = rng.choice(("female", "male"))
    subject = {"reference": f"Patient/{mid}"}
    records: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": mid, "gender": gender,
         "birthDate": _day(rng, date(2026 - age, 1, 1), date(2026 - age, 12, 28))},
        {"resourceType": "Encounter", "id": f"visit-{mid}", "status": "finished",
         "class": {"system": ACT, "code": "AMB"}, "type": [{"coding": [{"system": CPT, "code": "99213"}]}],
         "subject": subject, "period": {"start": (visit := _when(rng)), "end": visit}},
    ]

    def condition(code: str, cid: str) -> None:
        records.append({"resourceType": "Condition", "id": f"{cid}-{mid}", "subject": subject,
                        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                                 "condition-clinical", "code": "active"}]},
                        "code": {"coding": [{"system": ICD10, "code": code}]}, "onsetDateTime": "2019-06-01"})

    def observation(oid: str, code: str, **value: Any) -> None:
        records.append({"resourceType": "Observation", "id": f"{oid}-{mid}", "status": "final", "subject": subject,
                        "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": _when(rng),
                        **value})

    def procedure(pid: str, code: str, when: str) -> None:
        records.append({"resourceType": "Procedure", "id": f"{pid}-{mid}", "status": "completed", "subject": subject,
                        "code": {"coding": [{"system": CPT, "code": code}]}, "performedDateTime": when})

    if rng.random() < 0.5:
        condition("E11.9", "dm")
        if rng.random() < 0.7:
            observation("a1c", "4548-4", valueQuantity={"value": round(rng.uniform(5.5, 11.5), 1), "unit": "%",
                                                         "system": UCUM, "code": "%"})
    if rng.random() < 0.5:
        condition("I10", "htn")
        if rng.random() < 0.8:
            def part(code: str, value: int) -> dict[str, Any]:
                return {"code": {"coding": [{"system": LOINC, "code": code}]},
                        "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}
            observation("bp", "85354-9", component=[part("8480-6", rng.randrange(110, 170)),
                                                    part("8462-4", rng.randrange(65, 105))])
    if gender == "female" and 52 <= age <= 74 and rng.random() < 0.6:
        procedure("mammo", "77067", _day(rng, date(2024, 11, 1), date(2026, 12, 20)))
    if rng.random() < 0.2:
        end = date(2026, 1, 10) + timedelta(days=rng.randrange(330))
        records.append({"resourceType": "Encounter", "id": f"stay-{mid}", "status": "finished",
                        "class": {"system": ACT, "code": "IMP"}, "subject": subject,
                        "period": {"start": f"{(end - timedelta(days=3)).isoformat()}T08:00:00Z",
                                   "end": f"{end.isoformat()}T15:00:00Z"}})
        if rng.random() < 0.5:
            procedure("medrec", "1111F", (end + timedelta(days=rng.randrange(45))).isoformat())
    return records


def _key(result: MemberResult) -> tuple[bool, ...]:
    return (result.initial_population, result.denominator, result.denominator_exclusion, result.numerator,
            result.gap_open)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--postgres-sample", type=int, default=200)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="'' skips the PostgreSQL path")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    population = {f"gb{i:06d}": member(rng, f"gb{i:06d}") for i in range(args.members)}
    measures = load_measures()
    period = measurement_period("2026")

    started = time.perf_counter()
    memory = {(m.id, mid): evaluate_member(m, records, mid, period) for mid, records in population.items()
              for m in measures}
    memory_s = time.perf_counter() - started
    open_gaps = sum(r.gap_open for r in memory.values())
    report: dict[str, Any] = {
        "members": args.members, "measures": len(measures), "open_gaps": open_gaps,
        "memory": {"seconds": round(memory_s, 3), "members_per_s": round(args.members / memory_s, 1),
                   "evaluations_per_s": round(len(memory) / memory_s, 1)},
    }
    if args.database_url and args.postgres_sample:
        sample = list(population)[: args.postgres_sample]
        schema = f"careloom_gaps_bench_{uuid.uuid4().hex[:8]}"
        try:
            started = time.perf_counter()
            load_members_postgres(measures, {mid: population[mid] for mid in sample},
                                  database_url=args.database_url, schema=schema)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            on_pg = {(m.id, r.member_id): r for m in measures
                     for r in evaluate_population_postgres(m, sample, period, database_url=args.database_url,
                                                           schema=schema)}
            pg_s = time.perf_counter() - started
        finally:
            drop_postgres_schema(database_url=args.database_url, schema=schema)
        mismatches = sum(_key(r) != _key(memory[key]) for key, r in on_pg.items())
        pg_rate = len(sample) / pg_s
        sample_memory_rate = args.members / memory_s
        report["postgres"] = {
            "members": len(sample), "load_seconds": round(load_s, 3), "seconds": round(pg_s, 3),
            "members_per_s": round(pg_rate, 1), "evaluations_per_s": round(len(on_pg) / pg_s, 1),
            "ratio_to_memory": round(pg_rate / sample_memory_rate, 3), "mismatches": mismatches}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"population: {args.members:,} members x {len(measures)} measures; open gaps {open_gaps:,}")
    mem = report["memory"]
    print(f"in memory:  {mem['seconds']:.1f} s, {mem['members_per_s']:,.1f} members/s, "
          f"{mem['evaluations_per_s']:,.1f} evaluations/s")
    if "postgres" in report:
        pg = report["postgres"]
        print(f"PostgreSQL: {pg['members']:,} members loaded in {pg['load_seconds']:.1f} s, evaluated in "
              f"{pg['seconds']:.1f} s, {pg['members_per_s']:,.1f} members/s ({pg['ratio_to_memory']:.3f}x memory); "
              f"mismatches {pg['mismatches']}")


if __name__ == "__main__":
    main()
