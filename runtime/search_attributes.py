"""The custom search attributes careloom sets on its runs.

They make parked runs listable across all workflows (for example every run
waiting for an MD). Values are identifiers and codes, never PHI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from temporalio.common import SearchAttributeKey

if TYPE_CHECKING:  # workflow code imports this module: it keeps to values and pure functions
    from temporalio.client import Client

__all__ = ["ALL_KEYS", "FINAL_STATUSES", "RunStatus", "APPROVAL_ROLES", "DISCHARGED_AT", "MEMBER", "PENDING_APPROVALS", "PRIORITY", "QUEUES",
           "SLA_DEADLINE", "STATUS", "TCM_DUE", "dev_server_flags", "register_missing"]

RunStatus = Literal[
    "starting", "gathering", "planning", "executing", "awaiting_approval", "deferred", "awaiting_documentation", "monitoring",
    "completed", "needs_attention", "ineligible", "not_discharged", "withdrawn",
]
"""A run's status word (the CareloomStatus search attribute); the last five are final (a cancelled run, and one
withdrawn by its source, ends ``withdrawn``; one that could not go on ends ``needs_attention`` with a human
follow-up Task)."""
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "needs_attention", "ineligible", "not_discharged",
                                            "withdrawn"})

STATUS = SearchAttributeKey.for_keyword("CareloomStatus")
"""Run status: gathering, planning, awaiting_approval, deferred, executing, completed, ..."""
PENDING_APPROVALS = SearchAttributeKey.for_int("CareloomPendingApprovals")
"""How many approvals the run is waiting for."""
APPROVAL_ROLES = SearchAttributeKey.for_keyword_list("CareloomApprovalRoles")
"""Roles that can clear the run's pending approvals (care_coordinator, rn, md)."""
MEMBER = SearchAttributeKey.for_keyword("CareloomMember")
"""The member's pseudonym (a salted hash), never the member id."""
QUEUES = SearchAttributeKey.for_keyword_list("CareloomQueues")
"""Approval queues the run's pending items sit in."""
PRIORITY = SearchAttributeKey.for_keyword("CareloomPriority")
"""Highest priority among pending items: urgent or routine."""
SLA_DEADLINE = SearchAttributeKey.for_datetime("CareloomSlaDeadline")
"""Earliest SLA deadline among pending items."""
DISCHARGED_AT = SearchAttributeKey.for_datetime("CareloomDischargedAt")
"""When the stay an outreach run is about ended (set with the member, once the run has read the stay)."""
TCM_DUE = SearchAttributeKey.for_datetime("CareloomTcmDue")
"""The TCM interactive-contact deadline of an outreach run (2 business days after discharge, member's zone)."""

# Type names as `temporal operator search-attribute create --type` spells them.
_DEV_SERVER_TYPES = {
    STATUS: "Keyword", PENDING_APPROVALS: "Int", APPROVAL_ROLES: "KeywordList", MEMBER: "Keyword",
    QUEUES: "KeywordList", PRIORITY: "Keyword", SLA_DEADLINE: "Datetime", DISCHARGED_AT: "Datetime",
    TCM_DUE: "Datetime",
}
ALL_KEYS = tuple(_DEV_SERVER_TYPES)
"""Every key, in the order upserts list them. A cluster needs each registered (the embedded server, `careloom up`,
the demo and the tests register them all); a run upserting an unregistered one fails its workflow task."""


def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key, type_name in _DEV_SERVER_TYPES.items():
        flags += ["--search-attribute", f"{key.name}={type_name}"]
    return flags


async def register_missing(client: Client, namespace: str) -> list[str]:
    """Register every careloom key the namespace lacks; the names added.

    ``start-dev --search-attribute`` registers keys only when it creates its database: an embedded server whose
    state folder an older careloom made would lack a key added since, and every new run's upsert of it would
    fail its workflow task (the run stuck). So the embedded server adds what is missing at each start.
    """
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    known = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    missing = {key.name: int(key.indexed_value_type) for key in ALL_KEYS if key.name not in known.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))  # type: ignore[arg-type]
    return sorted(missing)
