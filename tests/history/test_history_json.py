"""The fast history parser gives exactly the SDK parser's History, or steps aside for it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory

from history.files import load_history
from history.history_json import NotFastPath, history_from_dict

GOLDEN = sorted((Path(__file__).resolve().parents[1] / "golden" / "histories").glob("*.json"))


def sdk(raw: dict) -> History:
    return History(events=WorkflowHistory.from_json("wf", copy.deepcopy(raw)).events)


def started(**attributes: object) -> dict:
    event = {"eventId": "1", "eventTime": "2026-11-28T22:45:01.5Z", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
             "workflowExecutionStartedEventAttributes": {"workflowType": {"name": "MemberOutreachWorkflow"},
                                                         **attributes}}
    return {"events": [event]}


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_every_golden_history_parses_to_the_sdk_result(path: Path) -> None:
    raw = json.loads(path.read_text())
    fast = history_from_dict(raw)
    assert fast == sdk(raw)
    assert fast.SerializeToString(deterministic=True) == sdk(raw).SerializeToString(deterministic=True)
    assert len(fast.events) == len(raw["events"]) >= 20


@pytest.mark.parametrize("value", [
    "2026-11-28T22:45:01Z", "2026-11-28T22:45:01.1Z", "2026-11-28T22:45:01.123456789Z",
    "2026-11-28T22:45:01.120+05:30", "2026-11-28T02:45:01-04:00", "1969-12-31T23:59:59.5Z",
])
def test_timestamps_in_every_offset_and_precision(value: str) -> None:
    raw = started()
    raw["events"][0]["eventTime"] = value
    assert history_from_dict(raw) == sdk(raw)


@pytest.mark.parametrize("value", ["10s", "0.5s", "1.000000001s", "86400s", "-2.25s"])
def test_durations(value: str) -> None:
    raw = started(workflowRunTimeout=value)
    assert history_from_dict(raw) == sdk(raw)


def test_scalars_bytes_maps_snake_case_unknown_fields_and_nulls() -> None:
    payload = {"metadata": {"encoding": "anNvbi9wbGFpbg=="}, "data": "eyJhIjoxfQ"}  # no padding
    raw = started(input={"payloads": [payload, {"data": "-_8="}]},  # URL-safe alphabet
                  attempt=3, workflow_task_timeout="10s",  # a proto field name instead of the JSON name
                  searchAttributes={"indexedFields": {"CareloomStatus": payload}},
                  header=None, somethingNewFromAFutureServer={"x": 1})
    raw["events"][0]["eventId"] = 7  # a number, not a string
    fast = history_from_dict(raw)
    assert fast == sdk(raw)
    attrs = fast.events[0].workflow_execution_started_event_attributes
    assert attrs.input.payloads[1].data == b"\xfb\xff"
    assert attrs.workflow_task_timeout.seconds == 10 and attrs.attempt == 3


@pytest.mark.parametrize("mutate", [
    lambda e: e.update(eventType="WorkflowExecutionStarted"),  # older CLI spelling: the SDK fixes it
    lambda e: e.update(eventTime="Saturday"),
    lambda e: e.update(eventTime="2026-11-28T25:00:00Z"),  # out of range: the SDK parser reports it
    lambda e: e.update(eventTime="2026-02-30T22:45:01Z"),
    lambda e: e.update(eventTime="2026-11-28T22:45:60Z"),
    lambda e: e.update(eventTime="2026-11-28T22:45:01+24:00"),
    lambda e: e["workflowExecutionStartedEventAttributes"].update(workflowRunTimeout="999999999999999s"),
    lambda e: e.update(eventId="1.0"),
    lambda e: e["workflowExecutionStartedEventAttributes"].update(input={"payloads": [None]}),
    lambda e: e.update(workflowTaskScheduledEventAttributes={}),  # a second attribute of the oneof
    lambda e: e["workflowExecutionStartedEventAttributes"].update(memo={"fields": {"a": {"data": 5}}}),
])
def test_anything_unusual_is_left_to_the_sdk_parser(mutate: object) -> None:
    raw = started()
    mutate(raw["events"][0])  # type: ignore[operator]
    with pytest.raises(NotFastPath):
        history_from_dict(raw)


def test_a_legacy_file_still_loads_through_the_sdk_parser(tmp_path: Path) -> None:
    raw = json.loads(GOLDEN[0].read_text())
    for event in raw["events"]:
        event["eventType"] = "".join(w.capitalize() for w in event["eventType"].removeprefix("EVENT_TYPE_").split("_"))
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(raw))
    loaded = load_history(path)
    assert History(events=loaded.history.events) == History(events=load_history(GOLDEN[0]).history.events)
