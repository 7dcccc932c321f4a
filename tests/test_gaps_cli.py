"""``careloom gaps report`` as a user runs it, on a temporary state folder holding three hand-built members.

Counted by hand (calendar 2026):

- gx-a, man born 1960: diabetic, HbA1c 9.6 % → CMS122 open; hypertensive, 132/84 → CMS165 closed.
- gx-b, woman born 1960: diabetic, HbA1c 7.0 % → CMS122 closed; office visit, no mammogram → CMS125 open.
- gx-c, woman born 1960: diabetic, in hospice → CMS122 and CMS125 excluded.
- an Encounter of a member without a Patient: not evaluated. Nobody was discharged: MRP all zero.

Closed after outreach: gx-b was sent a care-gap reminder and its run recorded CMS122 closed (checked again by
``record_closures``) → 1; gx-a's CMS122 was recorded closed once but is open again → not counted; gx-a's CMS165
closed with no run → not counted.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from runtime.settings import Settings
from store.connect import configured_database
from store.sql_records import SqlCareRecordStore
from tests.cli import careloom, clean_env
from tools.care_gap_models import RecordClosuresInput
from tools.gap_closures import closure_issue, record_closures
from tools.quality_measures import shipped_measures
from tests.tools.test_quality_measures import (
    CMS122,
    CMS125,
    CMS165,
    MRP,
    _diabetic,
    _hypertensive,
    blood_pressure,
    hba1c,
    hospice,
    visit,
)

# (initial population, denominator, exclusions, numerator, open gaps, closed gaps, closed after outreach)
EXPECTED = {CMS122: (3, 3, 1, 1, 1, 1, 1), CMS125: (2, 2, 1, 0, 1, 0, 0), CMS165: (1, 1, 0, 1, 0, 1, 0),
            MRP: (0,) * 7}
_REMINDER = {"resourceType": "Communication", "id": "gx-b-reminder", "status": "in-progress",
             "category": [{"text": "care-gap closure"}], "subject": {"reference": "Patient/gx-b"},
             "recipient": [{"reference": "Patient/gx-b"}], "sent": "2026-04-01T15:00:00+00:00",
             "payload": [{"contentString": "You have 1 health item due."}]}


def _members() -> list[dict[str, Any]]:
    a = _diabetic("gx-a", hba1c("gx-a", "2026-06-01T10:00:00Z", 9.6), blood_pressure("gx-a", "2026-09-01", 132, 84))
    hypertension = next(r for r in _hypertensive("gx-a") if r["resourceType"] == "Condition")
    b = _diabetic("gx-b", hba1c("gx-b", "2026-05-01", 7.0))
    c = _diabetic("gx-c", hospice("gx-c"))
    return [{**a[0], "gender": "male"}, *a[1:], {**hypertension, "id": "htn-gx-a"}, *b, *c, visit("gx-ghost")]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gaps-state")
    store = SqlCareRecordStore(configured_database(Settings(state_dir=folder, _env_file=None)))
    store.put_many([*_members(), _REMINDER])
    measures = {m.id: m for m in shipped_measures()}
    recorded = record_closures(store, measures, "care-gap-gx-b", RecordClosuresInput(
        member_id="gx-b", period_start=date(2026, 1, 1), period_end=date(2026, 12, 31), measure_ids=[CMS122]))
    assert (["cms122-diabetes-hba1c-poor-control"], [CMS122]) == (recorded.closed, recorded.after_outreach)
    reopened = closure_issue("gx-a", measures[CMS122], date(2026, 1, 1), date(2026, 12, 31), workflow_id="care-gap-gx-a",
                             contacts=["Communication/gx-a-reminder"], now=datetime(2026, 6, 1, tzinfo=UTC))
    store.create_once([reopened], "gap-closure/care-gap-gx-a")
    store.close()
    return folder


def _run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return careloom(clean_env(CARELOOM_STATE_DIR=str(state)), "gaps", "report", *args, timeout=120)


def test_json_report_counts_by_hand(state: Path) -> None:
    done = _run(state, "--period", "2026", "--json")
    assert 0 == done.returncode, done.stderr
    out = json.loads(done.stdout)
    assert ({"start": "2026-01-01", "end": "2026-12-31"}, 3) == (out["period"], out["members_evaluated"])
    got = {m["measure_id"]: (m["initial_population"], m["denominator"], m["denominator_exclusion"], m["numerator"],
                             m["open_gaps"], m["closed_gaps"], m["closed_after_outreach"]) for m in out["measures"]}
    assert EXPECTED == got


def test_measure_filter_and_the_table(state: Path) -> None:
    """--measure keeps the order asked; the table names each figure."""
    done = _run(state, "--period", "2026-01-01/2026-12-31", "--measure", CMS165, "--measure", CMS122, "--json")
    assert 0 == done.returncode, done.stderr
    assert [CMS165, CMS122] == [m["measure_id"] for m in json.loads(done.stdout)["measures"]]
    table = _run(state, "--period", "2026", "--measure", CMS125)
    assert 0 == table.returncode, table.stderr
    assert all(word in table.stdout for word in ("denominator", "open gaps", "closed gaps", "closed after outreach",
                                                 "3 member(s)"))
    (row,) = [line for line in table.stdout.splitlines() if "cms125" in line]
    assert ["2", "0", "1", "1", "0", "0"] == [cell.strip() for cell in row.split("│")[2:8]]


@pytest.mark.parametrize(("args", "names"), [
    (("--period", "twenty-six"), "--period: measurement period 'twenty-six' does not parse"),
    (("--period", "2026-02-30/2026-12-31"), "does not parse"),
    (("--period", "2026", "--measure", "cms999-nothing"), "--measure cms999-nothing: not a careloom measure"),
])
def test_bad_input_exits_2_naming_it(state: Path, args: tuple[str, ...], names: str) -> None:
    done = _run(state, *args)
    assert 2 == done.returncode, done.stdout
    assert names in " ".join(done.stderr.split())
