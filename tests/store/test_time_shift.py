"""Sample data moved in time: whole dates and date-times move, everything else stays as written."""

from __future__ import annotations

import json
from pathlib import Path

from store.time_shift import shift_folder, shift_value


def test_whole_dates_and_date_times_move_and_other_strings_stay() -> None:
    value = {"period": {"start": "2024-01-01", "end": "2024-12-31"}, "birthDate": "1950-02-28",
             "when": "2024-11-19T16:45:00-05:00", "utc": "2024-12-31T23:00:00Z",
             "identifier": [{"value": "POP-000021-0-fy2024"}, {"value": "2024-12-31-extra"}], "count": 3}
    assert {"period": {"start": "2024-01-11", "end": "2025-01-10"}, "birthDate": "1950-03-10",
            "when": "2024-11-29T16:45:00-05:00", "utc": "2025-01-10T23:00:00Z",
            "identifier": [{"value": "POP-000021-0-fy2024"}, {"value": "2024-12-31-extra"}], "count": 3} == \
        shift_value(value, 10)


def test_a_folder_is_copied_with_its_dates_moved_and_the_source_untouched(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "prior_auth").mkdir(parents=True)
    (source / "Coverage.ndjson").write_text(json.dumps({"period": {"end": "2024-12-31"}}) + "\n")
    (source / "prior_auth" / "req.json").write_text(json.dumps({"servicedDate": "2024-11-20"}))
    (source / "README.md").write_text("not data")
    out = shift_folder(source, tmp_path / "out", 700)
    assert {"period": {"end": "2026-12-01"}} == json.loads((out / "Coverage.ndjson").read_text())
    assert {"servicedDate": "2026-10-21"} == json.loads((out / "prior_auth" / "req.json").read_text())
    assert not (out / "README.md").exists()
    assert "2024-12-31" in (source / "Coverage.ndjson").read_text()
