"""Tests for tools.writes: deterministic resource ids for write tools."""

from __future__ import annotations

import uuid

from tools.writes import resource_id


def test_same_key_and_part_give_the_same_id():
    """The same key always names the same resource."""
    assert resource_id("wf-1#a1", "task") == resource_id("wf-1#a1", "task")


def test_different_parts_of_one_key_give_different_ids():
    """A CarePlan and its Goals written under one key get different ids."""
    assert 3 == len({resource_id("wf-1#a1", "careplan"), resource_id("wf-1#a1", "goal-0"),
                     resource_id("wf-1#a1", "goal-1")})


def test_different_keys_give_different_ids():
    """Two keys never share an id."""
    assert resource_id("wf-1#a1", "task") != resource_id("wf-2#a1", "task")


def test_id_is_a_uuid():
    """Ids are UUIDs (valid FHIR ids, at most 64 characters)."""
    rid = resource_id("wf-1#a1", "task")

    assert (rid, 5) == (str(uuid.UUID(rid)), uuid.UUID(rid).version)
