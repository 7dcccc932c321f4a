"""The custom search attributes careloom sets on its runs.

They make parked runs listable across all workflows (for example every run
waiting for an MD). Values are identifiers and codes, never PHI.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = ["ALL_KEYS", "APPROVAL_ROLES", "MEMBER", "PENDING_APPROVALS", "PRIORITY", "QUEUES", "SLA_DEADLINE", "STATUS",
           "dev_server_flags"]

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

# Type names as `temporal operator search-attribute create --type` spells them.
_DEV_SERVER_TYPES = {
    STATUS: "Keyword", PENDING_APPROVALS: "Int", APPROVAL_ROLES: "KeywordList", MEMBER: "Keyword",
    QUEUES: "KeywordList", PRIORITY: "Keyword", SLA_DEADLINE: "Datetime",
}
ALL_KEYS = tuple(_DEV_SERVER_TYPES)

def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key, type_name in _DEV_SERVER_TYPES.items():
        flags += ["--search-attribute", f"{key.name}={type_name}"]
    return flags
