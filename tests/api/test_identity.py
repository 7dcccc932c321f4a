"""Tests for api.identity: the verifier protocol both token verifiers implement."""

from __future__ import annotations

from pathlib import Path

from api.identity import TokenVerifier
from api.jwt_auth import JwtVerifier
from api.users import UserDirectory


def test_both_verifiers_satisfy_the_protocol(tmp_path: Path):
    """UserDirectory and JwtVerifier are both TokenVerifiers."""
    directory = UserDirectory(tmp_path / "users.json")
    verifier = JwtVerifier(key="s" * 48, algorithms=["HS256"], issuer="https://idp.test", audience="careloom-api")

    assert (True, True) == (isinstance(directory, TokenVerifier), isinstance(verifier, TokenVerifier))
