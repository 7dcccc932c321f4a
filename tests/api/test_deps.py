"""Tests for api.deps: the bearer token taken out of the Authorization header."""

from __future__ import annotations

import jwt
import pytest

from api.deps import bearer_token
from api.identity import AuthError


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_authorization_header_is_refused(header: str | None):
    """No Authorization header asks for a bearer token."""
    with pytest.raises(AuthError) as caught:
        bearer_token(header)

    assert "missing bearer token: send Authorization: Bearer <token>" == str(caught.value)


@pytest.mark.parametrize("header", ["Basic ZHI6cGFzcw==", "clt_s3cretvalue", "Token clt_s3cretvalue"])
def test_other_authorization_scheme_is_refused_without_echoing_it(header: str):
    """A header that is not 'Bearer <token>' is refused, and the message does not repeat the credential."""
    with pytest.raises(AuthError) as caught:
        bearer_token(header)

    message = str(caught.value)
    assert ("authorization scheme is not Bearer: send Authorization: Bearer <token>", False) \
        == (message, "s3cret" in message or "ZHI6" in message)


@pytest.mark.parametrize("header", ["Bearer", "Bearer   ", "Bearer two words"])
def test_bearer_without_a_single_token_is_refused(header: str):
    """'Bearer' with no token, or with more than one word, is refused."""
    with pytest.raises(AuthError) as caught:
        bearer_token(header)

    assert True == str(caught.value).endswith("send Authorization: Bearer <token>")


@pytest.mark.parametrize("header", ["Bearer clt_abc-_9", "bearer clt_abc-_9", "BEARER   clt_abc-_9  "])
def test_bearer_token_is_extracted_case_insensitively(header: str):
    """The scheme is matched case-insensitively and surrounding spaces are ignored."""
    assert "clt_abc-_9" == bearer_token(header)



def test_bearer_token_accepts_a_jwt():
    """A JWT (three base64url parts) passes through unchanged."""
    token = jwt.encode({"sub": "dr.rivera", "roles": ["rn"]}, "s" * 48, algorithm="HS256")

    assert token == bearer_token(f"Bearer {token}")
