"""The service itself: liveness, and who the caller is."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentIdentity
from api.identity import Identity

__all__ = ["router"]

router = APIRouter(prefix="/api")


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/me")
async def me(who: CurrentIdentity) -> Identity:
    return who
