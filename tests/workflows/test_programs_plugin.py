"""The programs plugin registers each program's workflow and binds every declared tool to the host activity of
the same frozen type; a deployment mistake (a missing host, a duplicate, a type that differs) stops the worker
at start with the problem named."""

from __future__ import annotations

import pytest
from temporalio import activity

from runtime.errors import ConfigurationError
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tools.member import LookupMemberInput, MemberProfile
from tools.registry import LOOKUP_MEMBER, SEND_OUTREACH, ToolSpec
from worker import build_hosts
from workflows.programs import ALL_TOOLS, PROGRAMS
from workflows.programs_plugin import ProgramsPlugin, bind_activities, offered_activities


class _Lookup:
    @activity.defn(name="tools.lookup_member")
    def lookup_member(self, data: LookupMemberInput) -> MemberProfile:
        raise NotImplementedError


class _WrongResult:
    @activity.defn(name="tools.lookup_member")
    def lookup_member(self, data: LookupMemberInput) -> str:
        raise NotImplementedError


def test_every_declared_tool_is_bound_to_the_host_activity_of_its_type(settings: Settings,
                                                                       store: SqlCareRecordStore) -> None:
    hosts = build_hosts(settings, store)
    plugin = ProgramsPlugin(hosts)
    names = [activity._Definition.must_from_callable(a).name for a in plugin.activities]  # noqa: SLF001
    assert names == [t.name for t in ALL_TOOLS]
    assert len(set(names)) == len(names)
    assert [p.workflow for p in PROGRAMS] == list(plugin.workflows or [])
    # The bound method belongs to the host given once, not to a new object.
    send = bind_activities(hosts, [SEND_OUTREACH])[0]
    assert send.__self__ is hosts.care  # type: ignore[attr-defined]


def test_a_declared_tool_without_a_host_stops_the_worker(settings: Settings, store: SqlCareRecordStore) -> None:
    hosts = build_hosts(settings, store)
    with pytest.raises(ConfigurationError, match="no host given to the worker runs activity 'um.review_evidence'"):
        ProgramsPlugin([hosts.care, hosts.planner, hosts.recommender, hosts.ledger])


def test_two_hosts_offering_one_activity_stop_the_worker(settings: Settings, store: SqlCareRecordStore) -> None:
    with pytest.raises(ConfigurationError, match="two hosts given to the worker run activity 'tools.lookup_member'"):
        offered_activities([build_hosts(settings, store).care, _Lookup()])


def test_a_host_whose_types_differ_from_the_declaration_stops_the_worker() -> None:
    with pytest.raises(ConfigurationError, match="'tools.lookup_member': the host takes .* and returns <class 'str'>"):
        bind_activities([_WrongResult()], [LOOKUP_MEMBER])
    host = _Lookup()
    assert [host.lookup_member] == bind_activities([host], [LOOKUP_MEMBER])


def test_a_rate_limited_queue_registers_its_tools_only(settings: Settings, store: SqlCareRecordStore) -> None:
    hosts = build_hosts(settings, store)
    planners = [t for t in ALL_TOOLS if t.kind == "planner"]
    plugin = ProgramsPlugin(hosts.planners, tools=planners, workflows=False)
    assert plugin.workflows is None
    assert sorted(activity._Definition.must_from_callable(a).name for a in plugin.activities) == sorted(  # noqa: SLF001
        t.name for t in planners) == ["agents.plan_care_gaps", "agents.plan_outreach", "agents.recommend_determination"]


def test_declarations_name_frozen_activity_types() -> None:
    """The activity types histories name; renaming one breaks every recorded run (the golden replay would too)."""
    assert {t.name for t in ALL_TOOLS} == {
        "tools.lookup_member", "tools.check_eligibility", "tools.get_clinical_context", "tools.score_readmission_risk",
        "agents.plan_outreach", "tools.draft_care_plan", "tools.create_task", "tools.send_outreach",
        "um.review_evidence", "agents.recommend_determination", "um.issue_determination", "ledger.append",
        "care_gaps.evaluate", "care_gaps.record_closure", "agents.plan_care_gaps"}
    assert all(isinstance(t, ToolSpec) for t in ALL_TOOLS)
