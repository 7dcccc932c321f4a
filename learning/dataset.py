"""The training table: one row per index stay (features at discharge, subgroup columns, the 30-day label).

``generate`` writes simulated members (:mod:`learning.simulate`) into a care records database and the cohort
(the index stays, no labels) beside it; ``build_dataset`` reads the records back through
:func:`learning.features.stay_features` and :func:`learning.features.readmitted_within_30_days`, exactly as the
scorer will see a discharge, and writes ``dataset.csv``. The table's sha256 (of the CSV bytes) is the training
data digest the model manifest records. Generated data is written where it is told (or under the state
folder), never into the repository.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learning.features import FEATURES, GROUP_COLUMNS, MissingFeature, readmitted_within_30_days, stay_features
from learning.simulate import IndexStay, simulate_members
from runtime.errors import CareloomError
from store.records import CareRecordStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COHORT_FILE", "DATASET_FILE", "LABEL", "RECORDS_FILE", "DataLocation", "DatasetError",
           "build_dataset", "dataset_digest", "generate", "load_dataset", "locate"]

LABEL = "readmitted_30d"
COHORT_FILE, DATASET_FILE, RECORDS_FILE = "cohort.csv", "dataset.csv", "records.db"
_BATCH = 2000


class DatasetError(CareloomError):
    """The training data is missing, unreadable, or not the data a model was trained on."""


@dataclass(frozen=True)
class DataLocation:
    folder: Path
    records: Path

    @property
    def cohort(self) -> Path:
        return self.folder / COHORT_FILE

    @property
    def dataset(self) -> Path:
        return self.folder / DATASET_FILE


def locate(out: Path) -> DataLocation:
    """``out`` as a data folder: a folder (records in ``records.db`` inside it) or a records database file
    (``.db``/``.sqlite``: the cohort and dataset are written beside it)."""
    if out.suffix in (".db", ".sqlite", ".sqlite3"):
        return DataLocation(out.parent, out)
    return DataLocation(out, out / RECORDS_FILE)


def _open_store(path: Path) -> Any:  # noqa: ANN401 - SqlCareRecordStore (imported lazily: it opens a database)
    from store.sql_records import SqlCareRecordStore

    return SqlCareRecordStore(path)


def generate(where: DataLocation, members: int, seed: int) -> list[IndexStay]:
    """Simulate ``members`` members into ``where.records`` and write the cohort; refuses a non-empty store."""
    where.folder.mkdir(parents=True, exist_ok=True)
    store = _open_store(where.records)
    try:
        if store.count() > 0:
            raise DatasetError(f"{where.records} already holds {store.count()} records: generate into a new "
                               "folder or database (generated data is never mixed with other records)")
        cohort: list[IndexStay] = []
        batch: list[dict[str, Any]] = []
        for stay, resources in simulate_members(members, seed):
            cohort.append(stay)
            batch.extend(resources)
            if len(batch) >= _BATCH:
                store.put_many(batch)
                batch = []
        if batch:
            store.put_many(batch)
    finally:
        store.close()
    with where.cohort.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["member_id", "encounter_id", "discharged_at"])
        writer.writeheader()
        writer.writerows(asdict(s) for s in cohort)
    return cohort


def _read_cohort(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DatasetError(f"no cohort file {path}: run `careloom model data --out {path.parent}` first")
    with path.open(newline="") as handle:
        return [(row["member_id"], row["encounter_id"]) for row in csv.DictReader(handle)]


def rows_for(store: CareRecordStore, cohort: Iterable[tuple[str, str]]) -> tuple[list[dict[str, Any]], int]:
    """(one row per scorable index stay, stays skipped for a missing feature)."""
    rows, skipped = [], 0
    for member_id, encounter_id in cohort:
        try:
            features = stay_features(store, member_id, encounter_id)
        except MissingFeature:
            skipped += 1
            continue
        rows.append({"member_id": member_id, "encounter_id": encounter_id, **features,
                     LABEL: int(readmitted_within_30_days(store, member_id, encounter_id))})
    return rows, skipped


def build_dataset(where: DataLocation) -> tuple[Path, int, int]:
    """Write ``dataset.csv`` from the records and the cohort: (path, rows, stays skipped)."""
    cohort = _read_cohort(where.cohort)
    if not where.records.is_file():
        raise DatasetError(f"no records database {where.records}")
    store = _open_store(where.records)
    try:
        rows, skipped = rows_for(store, cohort)
    finally:
        store.close()
    columns = ["member_id", "encounter_id", *FEATURES, *GROUP_COLUMNS, LABEL]
    with where.dataset.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return where.dataset, len(rows), skipped


def dataset_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(folder: Path) -> tuple[pd.DataFrame, str]:
    """(the table, its sha256) from a data folder (or its records database path)."""
    import pandas as pd

    path = locate(folder).dataset
    if not path.is_file():
        raise DatasetError(f"no training table {path}: run `careloom model data --out {path.parent}` first")
    frame = pd.read_csv(path, dtype={"member_id": str, "encounter_id": str})
    missing = [c for c in (*FEATURES, LABEL) if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path} lacks column(s) {', '.join(missing)}: rebuild it with `careloom model data`")
    return frame, dataset_digest(path)
