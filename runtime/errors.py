"""Exceptions raised outside workflows; each message names the problem and the fix."""

from __future__ import annotations

__all__ = ["CareloomError", "ConfigurationError", "ImportFailure"]


class CareloomError(Exception):
    """Base class for careloom's own errors."""


class ConfigurationError(CareloomError):
    """Settings or environment prevent careloom from starting."""


class ImportFailure(CareloomError):
    """A whole import could not run (missing folder, unreadable file)."""
