"""The custom search attributes careloom sets on its runs.

They make parked runs listable across all workflows (for example every run
waiting for an MD). Values are identifiers and codes, never PHI.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

__all__ = ["ALL_KEYS", "APPROVAL_ROLES", "MEMBER", "PENDING_APPROVALS", "STATUS", "dev_server_flags"]

STATUS = SearchAttributeKey.for_keyword("CareloomStatus")
"""Run status: gathering, planning, awaiting_approval, deferred, executing, completed, ..."""
PENDING_APPROVALS = SearchAttributeKey.for_int("CareloomPendingApprovals")
"""How many approvals the run is waiting for."""
APPROVAL_ROLES = SearchAttributeKey.for_keyword_list("CareloomApprovalRoles")
"""Roles that can clear the run's pending approvals (care_coordinator, rn, md)."""
MEMBER = SearchAttributeKey.for_keyword("CareloomMember")
"""The member's pseudonym (a salted hash), never the member id."""

# Type names as `temporal operator search-attribute create --type` spells them.
_DEV_SERVER_TYPES = {STATUS: "Keyword", PENDING_APPROVALS: "Int", APPROVAL_ROLES: "KeywordList", MEMBER: "Keyword"}
ALL_KEYS = tuple(_DEV_SERVER_TYPES)

def dev_server_flags() -> list[str]:
    """``--search-attribute Name=Type`` flags for ``temporal server start-dev``."""
    flags: list[str] = []
    for key, type_name in _DEV_SERVER_TYPES.items():
        flags += ["--search-attribute", f"{key.name}={type_name}"]
    return flags
