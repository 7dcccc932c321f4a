"""``care_gaps.record_closure`` does not take the run's word: a gap still open is not recorded closed; a closure
with no care-gap contact in the period is recorded, but not as after outreach; a contact before the period, or
another program's message, is not care-gap outreach; a retry records once."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from tests.databases import fresh_store
from tests.tools.test_quality_measures import CMS122, CMS165, _diabetic, hba1c
from tools.care_gap_models import RecordClosuresInput
from tools.gap_closures import closed_after_outreach, record_closures
from tools.quality_measures import shipped_measures

PERIOD = {"period_start": date(2026, 1, 1), "period_end": date(2026, 12, 31)}


def _message(mid: str, sent: str, program: str = "care-gap closure", cid: str = "msg") -> dict[str, Any]:
    return {"resourceType": "Communication", "id": f"{cid}-{mid}", "status": "in-progress",
            "category": [{"text": program}], "subject": {"reference": f"Patient/{mid}"},
            "sent": sent, "payload": [{"contentString": "You have 1 health item due."}]}


def _record(store, mid: str, *measure_ids: str):  # noqa: ANN001, ANN202
    return record_closures(store, {m.id: m for m in shipped_measures()}, f"care-gap-{mid}",
                           RecordClosuresInput(member_id=mid, measure_ids=list(measure_ids), **PERIOD))


def test_only_a_gap_closed_now_is_recorded_and_only_real_outreach_counts(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        store.put_many([*_diabetic("still-open", hba1c("still-open", "2026-05-01", 9.8)),
                        _message("still-open", "2026-04-01T15:00:00+00:00")])
        store.put_many([*_diabetic("closed-quietly", hba1c("closed-quietly", "2026-05-01", 6.9)),
                        _message("closed-quietly", "2025-11-01T15:00:00+00:00"),  # before the period
                        _message("closed-quietly", "2026-04-01T15:00:00+00:00", program="post-discharge outreach")])
        store.put_many([*_diabetic("reached", hba1c("reached", "2026-05-01", 6.9)),
                        _message("reached", "2026-04-01T15:00:00+00:00")])

        assert ([], []) == _tuple(_record(store, "still-open", CMS122))  # the run said closed; the engine did not
        assert store.find_for_member("DetectedIssue", "still-open") == []
        assert ([CMS122], []) == _tuple(_record(store, "closed-quietly", CMS122))
        assert not closed_after_outreach(store, "closed-quietly", CMS122, **PERIOD)
        # CMS165 does not apply to this member (no hypertension): nothing to record for it.
        assert ([CMS122], [CMS122]) == _tuple(_record(store, "reached", CMS122, CMS165))
        assert ([CMS122], [CMS122]) == _tuple(_record(store, "reached", CMS122))  # a retry: the first record
        [issue] = store.find_for_member("DetectedIssue", "reached")
        assert [{"reference": "Communication/msg-reached"}] == issue["evidence"][0]["detail"]
        assert closed_after_outreach(store, "reached", CMS122, **PERIOD)
        assert not closed_after_outreach(store, "reached", CMS122, period_start=date(2025, 1, 1),
                                         period_end=date(2025, 12, 31))


def _tuple(record):  # noqa: ANN001, ANN202
    return record.closed, record.after_outreach
