"""The same hand-checked members as test_quality_measures.py, evaluated as SQL by the engine on PostgreSQL.

Needs the machine's PostgreSQL (tests/databases.py ADMIN_URL); skipped when it is not reachable. The engine's
tables live in a dedicated schema made for this module and dropped afterwards.
"""

from __future__ import annotations

import secrets

import pytest

from tests.databases import ADMIN_URL, postgres_available
from tests.tools.test_quality_measures import CASES, CMS122, PERIOD, _diabetic, hba1c
from tools.quality_measures import (
    MeasureError,
    drop_postgres_schema,
    evaluate_member,
    evaluate_population_postgres,
    load_measures,
    load_members_postgres,
    measurement_period,
)

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not reachable at " + ADMIN_URL)

DATABASE_URL = ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="module")
def measures():
    return {m.id: m for m in load_measures()}


@pytest.fixture(scope="module")
def schema(measures):
    name = f"careloom_qm_{secrets.token_hex(4)}"
    members = {case.member_id: case.resources for case in CASES}
    stored = load_members_postgres(list(measures.values()), members, database_url=DATABASE_URL, schema=name)
    assert stored == sum(len(r) for r in members.values())
    yield name
    drop_postgres_schema(database_url=DATABASE_URL, schema=name)


@pytest.mark.parametrize("measure_id", sorted({c.measure for c in CASES}))
def test_population_on_postgres_matches_the_hand_checked_members(measures, schema, measure_id):
    cases = [c for c in CASES if c.measure == measure_id]
    results = evaluate_population_postgres(measures[measure_id], [c.member_id for c in cases],
                                           measurement_period(PERIOD), database_url=DATABASE_URL, schema=schema)
    assert [r.member_id for r in results] == [c.member_id for c in cases]
    for case, result in zip(cases, results, strict=True):
        got = (result.initial_population, result.denominator, result.denominator_exclusion, result.numerator,
               result.gap_open)
        assert got == case.expected, case.name
        assert result.engine == "postgres"
        for ref in case.evidence:
            assert ref in result.evidence, case.name


def test_postgres_and_memory_agree_on_every_member_and_measure(measures, schema):
    period = measurement_period(PERIOD)
    for measure in measures.values():
        on_postgres = evaluate_population_postgres(measure, [c.member_id for c in CASES], period,
                                                   database_url=DATABASE_URL, schema=schema)
        for case, result in zip(CASES, on_postgres, strict=True):
            in_memory = evaluate_member(measure, case.resources, case.member_id, period)
            assert result.model_dump(exclude={"engine"}) == in_memory.model_dump(exclude={"engine"}), \
                (measure.id, case.name)


def test_reloading_a_member_replaces_their_records(measures, schema):
    member = "qm122reload"  # a1c 9.6 -> gap open; a new 7.2 result closes it
    period = measurement_period(PERIOD)
    load_members_postgres([measures[CMS122]], {member: _diabetic(member, hba1c(member, "2026-06-01T10:00:00Z", 9.6))},
                          database_url=DATABASE_URL, schema=schema)
    before = evaluate_population_postgres(measures[CMS122], [member], period, database_url=DATABASE_URL, schema=schema)
    updated = _diabetic(member, hba1c(member, "2026-06-01T10:00:00Z", 9.6), hba1c(member, "2026-10-01", 7.2, "a1c2"))
    load_members_postgres([measures[CMS122]], {member: updated}, database_url=DATABASE_URL, schema=schema)
    after = evaluate_population_postgres(measures[CMS122], [member], period, database_url=DATABASE_URL, schema=schema)
    assert (before[0].gap_open, after[0].gap_open) == (True, False)
    assert after[0].evidence[0] == f"Observation/a1c2-{member}"


def test_the_schema_must_be_a_dedicated_one(measures):
    with pytest.raises(MeasureError, match="dedicated"):
        load_members_postgres(list(measures.values()), {}, database_url=DATABASE_URL, schema="public")
    with pytest.raises(MeasureError, match="dedicated"):
        drop_postgres_schema(database_url=DATABASE_URL, schema='x"; drop table y; --')
