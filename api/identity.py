"""Who is calling: the principal every verifier produces, and the verifier protocol.

A :class:`TokenVerifier` turns a bearer token into an :class:`Identity` (user id
and careloom role) or raises :class:`AuthError`. The two verifiers live beside
this module: :class:`api.users.UserDirectory` (the embedded users file with
hashed API tokens) and :class:`api.jwt_auth.JwtVerifier` (an identity
provider's signed JWTs). Every :class:`AuthError` message names the problem and
the fix and never contains the token itself, so it is safe to log and to return
to the caller.
"""

from __future__ import annotations

from typing import Protocol, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from guardrails.policy import Role
from runtime.errors import CareloomError

__all__ = ["ROLES", "AuthError", "Identity", "TokenVerifier"]

ROLES: tuple[str, ...] = get_args(Role)
"""The careloom roles, least to most authority."""


class Identity(BaseModel):
    """An authenticated caller: who they are and the careloom role they act in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = Field(min_length=1)
    role: Role
    display_name: str | None = None


class AuthError(CareloomError):
    """The caller could not be authenticated (HTTP 401). The message names the problem and the fix."""


@runtime_checkable
class TokenVerifier(Protocol):
    """Turns a bearer token into an :class:`Identity`."""

    def verify(self, token: str) -> Identity:
        """The identity the token stands for; raises :class:`AuthError` if it stands for none."""
        ...
