"""Tests for api.users: the embedded users store (users file, hashed API tokens, roles).

Real files (tmp_path); nothing mocked.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import stat
from pathlib import Path

import pytest

from api.identity import Identity
from api.users import UserDirectory, UserDirectoryError
from tests.api.conftest import auth_error


@pytest.fixture
def directory(tmp_path: Path) -> UserDirectory:
    return UserDirectory(tmp_path / "state" / "users.json")



def test_added_user_token_verifies_to_their_identity(directory: UserDirectory):
    """A token returned by add_user verifies to that user's id, role and display name."""
    token = directory.add_user("dr.rivera", "md", "Dr. Ana Rivera")

    actual = directory.verify(token)

    assert Identity(user_id="dr.rivera", role="md", display_name="Dr. Ana Rivera") == actual


def test_token_has_careloom_prefix_and_256_bits(directory: UserDirectory):
    """Issued tokens are 'clt_' followed by 32 random bytes in URL-safe base64 (43 characters)."""
    token = directory.add_user("rn.lee", "rn")

    assert ("clt_", 43) == (token[:4], len(token[4:]))


def test_users_file_stores_only_the_token_digest(directory: UserDirectory):
    """The users file holds the token's SHA-256 digest in the documented format, never the token."""
    token = directory.add_user("rn.lee", "rn", "Sam Lee")

    text = directory.path.read_text()

    assert token not in text
    assert token[4:] not in text
    assert {"version": 1, "users": [{"user_id": "rn.lee", "role": "rn", "display_name": "Sam Lee",
                                     "token_sha256": hashlib.sha256(token.encode()).hexdigest()}]} \
        == json.loads(text)


def test_users_file_mode_is_0600_after_every_write(directory: UserDirectory):
    """The users file is created, and rewritten, readable and writable by its owner only (0600)."""
    directory.add_user("rn.lee", "rn")
    after_add = stat.S_IMODE(directory.path.stat().st_mode)
    directory.rotate_token("rn.lee")
    after_rotate = stat.S_IMODE(directory.path.stat().st_mode)

    assert (0o600, 0o600) == (after_add, after_rotate)


def test_writes_leave_no_temporary_files(directory: UserDirectory):
    """Atomic writes leave only the users file and its lock file in the folder."""
    directory.add_user("rn.lee", "rn")
    directory.rotate_token("rn.lee")

    actual = sorted(p.name for p in directory.path.parent.iterdir())

    assert ["users.json", "users.json.lock"] == actual


def test_rotated_token_replaces_the_old_one(directory: UserDirectory):
    """After rotate_token the new token verifies and the old one is refused as unknown or revoked."""
    old = directory.add_user("rn.lee", "rn")

    new = directory.rotate_token("rn.lee")

    assert "rn.lee" == directory.verify(new).user_id
    assert auth_error(directory, old).startswith("unknown or revoked token")


def test_rotation_by_another_process_takes_effect_at_once(directory: UserDirectory):
    """A directory object that already verified a token refuses it once another instance rotated it."""
    server_side = UserDirectory(directory.path)
    old = directory.add_user("rn.lee", "rn")
    assert "rn.lee" == server_side.verify(old).user_id

    directory.rotate_token("rn.lee")

    assert auth_error(server_side, old).startswith("unknown or revoked token")


def test_removed_user_is_gone_and_token_refused(directory: UserDirectory):
    """remove_user drops the user from get and users and their token stops verifying."""
    token = directory.add_user("rn.lee", "rn")
    directory.add_user("cc.kim", "care_coordinator")

    directory.remove_user("rn.lee")

    assert (None, ["cc.kim"]) == (directory.get("rn.lee"), [u.user_id for u in directory.users()])
    assert auth_error(directory, token).startswith("unknown or revoked token")


def test_users_are_listed_by_id(directory: UserDirectory):
    """users() lists every user, ordered by user id, with role and display name."""
    directory.add_user("rn.lee", "rn", "Sam Lee")
    directory.add_user("cc.kim", "care_coordinator")

    assert [Identity(user_id="cc.kim", role="care_coordinator"),
            Identity(user_id="rn.lee", role="rn", display_name="Sam Lee")] == directory.users()


def test_missing_file_is_an_empty_directory(directory: UserDirectory):
    """Before any user is added there are no users and no file."""
    assert ([], None, False) == (directory.users(), directory.get("rn.lee"), directory.path.exists())


def test_duplicate_user_is_refused_and_keeps_first_token(directory: UserDirectory):
    """Adding an existing user id fails with a clear error and the existing token keeps working."""
    token = directory.add_user("rn.lee", "rn")

    with pytest.raises(UserDirectoryError) as caught:
        directory.add_user("rn.lee", "md")

    assert "user 'rn.lee' already exists" in str(caught.value)
    assert Identity(user_id="rn.lee", role="rn") == directory.verify(token)


@pytest.mark.parametrize("user_id", ["A.rivera", "x", "dr rivera", "-lead", ".hidden", "a" * 65, "../etc", "é.a", ""])
def test_invalid_user_id_is_refused(directory: UserDirectory, user_id: str):
    """User ids outside ^[a-z0-9][a-z0-9._-]{1,63}$ are refused, naming the rule, and nothing is written."""
    with pytest.raises(UserDirectoryError) as caught:
        directory.add_user(user_id, "rn")

    assert (True, False) == ("invalid user id" in str(caught.value), directory.path.exists())


def test_unknown_role_is_refused(directory: UserDirectory):
    """A role that is not a careloom role is refused, listing the valid ones."""
    with pytest.raises(UserDirectoryError) as caught:
        directory.add_user("rn.lee", "nurse")  # type: ignore[arg-type]

    assert "unknown role 'nurse': use one of care_coordinator, rn, md" == str(caught.value)


def test_rotate_or_remove_of_unknown_user_is_refused(directory: UserDirectory):
    """rotate_token and remove_user of an unknown user raise an error naming the user and the file."""
    directory.add_user("rn.lee", "rn")
    messages = []
    for operation in (directory.rotate_token, directory.remove_user):
        with pytest.raises(UserDirectoryError) as caught:
            operation("nobody")
        messages.append(str(caught.value))

    expected = f"no user 'nobody' in {directory.path}; add it first with add_user"
    assert [expected, expected] == messages


@pytest.mark.parametrize("token", [
    "clt_" + secrets.token_urlsafe(32),  # well-formed, never issued
    "",
    "not-a-careloom-token",
])
def test_unknown_token_is_refused(directory: UserDirectory, token: str):
    """A token the directory never issued, or not a careloom token at all, is refused with AuthError."""
    directory.add_user("rn.lee", "rn")

    message = auth_error(directory, token)

    assert True == (message.startswith("unknown or revoked token") or message.startswith("not a careloom API token"))


def test_altered_token_is_refused(directory: UserDirectory):
    """A real token with one character changed does not verify."""
    token = directory.add_user("rn.lee", "rn")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert auth_error(directory, forged).startswith("unknown or revoked token")


def test_stored_digest_is_not_a_token(directory: UserDirectory):
    """Presenting the stored digest itself (as read from the file) does not authenticate."""
    directory.add_user("rn.lee", "rn")
    digest = json.loads(directory.path.read_text())["users"][0]["token_sha256"]

    assert auth_error(directory, "clt_" + digest).startswith("unknown or revoked token")


@pytest.mark.parametrize(("content", "problem"), [
    ("{not json", "is not valid JSON"),
    ('{"version": 1, "users": [], "admins": []}', "admins: Extra inputs are not permitted"),
    ('{"version": 2, "users": []}', "version: Input should be 1"),
    ('{"version": 1, "users": [{"user_id": "rn.lee", "role": "rn", "token_sha256": "abc"}]}',
     "users.0.token_sha256"),
    ('{"version": 1, "users": [{"user_id": "rn.lee", "role": "nurse", "token_sha256": "' + "0" * 64 + '"}]}',
     "users.0.role"),
    ('{"version": 1, "users": [{"user_id": "rn.lee", "role": "rn", "token_sha256": "' + "0" * 64
     + '", "password": "x"}]}', "users.0.password"),
])
def test_corrupt_users_file_gives_error_naming_the_file(tmp_path: Path, content: str, problem: str):
    """A users file that is not JSON, has unknown fields or invalid values raises an error naming the file and the problem."""
    path = tmp_path / "users.json"
    path.write_text(content)
    directory = UserDirectory(path)

    with pytest.raises(UserDirectoryError) as caught:
        directory.verify("clt_" + secrets.token_urlsafe(32))

    message = str(caught.value)
    assert (True, True) == (f"users file {path}" in message, problem in message)


def test_duplicate_entries_in_users_file_are_refused(tmp_path: Path):
    """A hand-edited users file listing one user twice is refused, naming the file and the user."""
    path = tmp_path / "users.json"
    entry = {"user_id": "rn.lee", "role": "rn", "display_name": None, "token_sha256": "1" * 64}
    path.write_text(json.dumps({"version": 1, "users": [entry, {**entry, "token_sha256": "2" * 64}]}))

    with pytest.raises(UserDirectoryError) as caught:
        UserDirectory(path).users()

    assert f"users file {path} lists user 'rn.lee' twice; keep one entry" == str(caught.value)
