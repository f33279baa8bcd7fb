"""Confirmation tokens: :class:`TokenSerializer`, ``Confirm.make_token`` and
``Confirm.load_user``, with real apps and real databases."""

from __future__ import annotations

import base64
import json
import random
import time
import typing as t

import pytest
from freezegun import freeze_time
from itsdangerous import URLSafeTimedSerializer

from flask_confirm import TokenError
from flask_confirm import TokenExpired
from flask_confirm import TokenInvalid
from flask_confirm.tokens import address_digest
from flask_confirm.tokens import MAX_TOKEN_LENGTH
from flask_confirm.tokens import SALT
from flask_confirm.tokens import TokenSerializer
from testapp import create_app

if t.TYPE_CHECKING:
    import collections.abc as cabc
    from pathlib import Path

    from flask import Flask

    from conftest import AppFactory

SECRET = "test-secret-key-that-is-long-enough"  # testapp's SECRET_KEY
EMAIL = "ada@example.org"


def models(app: Flask) -> dict[str, t.Any]:
    return t.cast("dict[str, t.Any]", app.extensions["test_models"])


def add_user(app: Flask, email: str = EMAIL) -> int:
    m = models(app)
    with app.app_context():
        user = m["User"](email=email)
        m["db"].session.add(user)
        m["db"].session.commit()
        return t.cast("int", user.id)


def make_token(app: Flask, user_id: int) -> str:
    m = models(app)
    with app.app_context():
        user = m["db"].session.get(m["User"], user_id)
        return t.cast("str", m["confirm"].make_token(user))


def load_user_id(app: Flask, token: str) -> t.Any:
    """``Confirm.load_user(token)`` in a fresh app context, as the id."""
    m = models(app)
    with app.app_context():
        return m["confirm"].load_user(token).id


def signed(payload: t.Any, key: str = SECRET, salt: str = SALT) -> str:
    """A token carrying ``payload``, signed as Flask-Confirm would sign it."""
    return URLSafeTimedSerializer(key, salt=salt).dumps(payload)


class _PaddedJSON:
    """A JSON serializer that pads its output with whitespace, which the JSON
    decoder on the loading side ignores."""

    def __init__(self, padding: str) -> None:
        self.padding = padding

    def dumps(self, obj: t.Any) -> str:
        return json.dumps(obj) + self.padding

    def loads(self, data: str | bytes) -> t.Any:
        return json.loads(data)


def padded(payload: t.Any, size: int) -> str:
    """A correctly signed token for ``payload`` whose JSON is padded with
    ``size`` random (hence hardly compressible) whitespace characters."""
    rng = random.Random(size)
    padding = "".join(rng.choice(" \t\n\r") for _ in range(size))
    serializer = URLSafeTimedSerializer(
        SECRET, salt=SALT, serializer=_PaddedJSON(padding)
    )
    return serializer.dumps(payload)


def over_long(payload: t.Any) -> str:
    """A correctly signed token for ``payload``, longer than MAX_TOKEN_LENGTH."""
    size = 64
    while len(token := padded(payload, size)) <= MAX_TOKEN_LENGTH:
        size *= 2
    return token


def flip(token: str, index: int) -> str:
    """``token`` with the character at ``index`` replaced by another base64
    character."""
    new = "A" if token[index] != "A" else "B"
    return token[:index] + new + token[index + 1 :]


# -- address_digest -----------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["ada@example.org", "ADA@EXAMPLE.ORG", "Ada@Example.Org", "  ada@example.org\t\n"],
)
def test_address_digest_normalises_case_and_whitespace(variant: str) -> None:
    assert address_digest(variant) == address_digest("ada@example.org")


def test_address_digest_tells_addresses_apart() -> None:
    digest = address_digest("ada@example.org")
    assert digest != address_digest("ada@example.com")
    assert digest != address_digest("ad@example.org")
    assert len(digest) == 20
    assert int(digest, 16) >= 0  # hexadecimal
    assert "ada" not in digest


# -- TokenSerializer ----------------------------------------------------------


@pytest.mark.parametrize("user_id", [1, 2**40, "user-7f3a"])
def test_serializer_round_trip(user_id: int | str) -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    token = serializer.dumps(user_id, "Ada@Example.org")
    assert serializer.loads(token) == (user_id, address_digest("ada@example.org"))
    assert len(token) <= MAX_TOKEN_LENGTH


def test_token_does_not_carry_the_address_readably() -> None:
    token = TokenSerializer([SECRET], max_age=60).dumps(1, EMAIL)
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert json.loads(decoded) == [1, address_digest(EMAIL)]
    assert b"ada" not in decoded and b"example" not in decoded


def test_serializer_expiry() -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    with freeze_time("2030-01-01 12:00:00") as frozen:
        token = serializer.dumps(1, EMAIL)
        frozen.tick(60)
        assert serializer.loads(token) == (1, address_digest(EMAIL))
        frozen.tick(1)
        with pytest.raises(TokenExpired):
            serializer.loads(token)


def test_expired_and_invalid_are_distinct() -> None:
    assert issubclass(TokenExpired, TokenError)
    assert issubclass(TokenInvalid, TokenError)
    assert not issubclass(TokenExpired, TokenInvalid)
    assert not issubclass(TokenInvalid, TokenExpired)


@pytest.mark.parametrize("part", [0, 1, 2], ids=["payload", "timestamp", "signature"])
def test_serializer_rejects_tampering(part: int) -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    token = serializer.dumps(1, EMAIL)
    pieces = token.split(".")
    assert len(pieces) == 3
    start = sum(len(p) + 1 for p in pieces[:part])
    # The middle of the part: its last character may only carry padding bits.
    tampered = flip(token, start + len(pieces[part]) // 2)
    assert tampered != token
    with pytest.raises(TokenInvalid):
        serializer.loads(tampered)


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "not-a-token", "a.b.c", "é" * 40, "\x00" * 10, "💥.💥.💥"],
)
def test_serializer_rejects_garbage(token: str) -> None:
    with pytest.raises(TokenInvalid):
        TokenSerializer([SECRET], max_age=60).loads(token)


def test_serializer_rejects_non_ascii_in_a_genuine_token() -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    token = serializer.dumps(1, EMAIL)
    with pytest.raises(TokenInvalid):
        serializer.loads(token[:10] + "é" + token[11:])


def test_serializer_rejects_a_genuine_token_over_max_length() -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    expected = [1, address_digest(EMAIL)]
    token = over_long(expected)
    # Correctly signed and well formed: only the length check can refuse it.
    assert URLSafeTimedSerializer(SECRET, salt=SALT).loads(token) == expected
    with pytest.raises(TokenInvalid):
        serializer.loads(token)


def test_serializer_length_limit_is_exact() -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    expected = [1, address_digest(EMAIL)]
    lengths = set()
    for size in range(0, 1200, 3):
        token = padded(expected, size)
        lengths.add(len(token) <= MAX_TOKEN_LENGTH)
        if len(token) <= MAX_TOKEN_LENGTH:
            assert serializer.loads(token) == (1, address_digest(EMAIL))
        else:
            with pytest.raises(TokenInvalid):
                serializer.loads(token)
    assert lengths == {True, False}  # both sides of the limit were tried


def test_serializer_rejects_a_huge_token_quickly() -> None:
    serializer = TokenSerializer([SECRET], max_age=60)
    genuine = serializer.dumps(1, EMAIL)
    huge = genuine + "A" * (10 * 1024 * 1024)
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(TokenInvalid):
            serializer.loads(huge)
    # Without the length check, each call would decode and HMAC 10 MB.
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "payload",
    [
        "x",
        1,
        None,
        True,
        {"id": 1, "digest": "abc"},
        [],
        [1],
        [1, "abc", "extra"],
        [True, "abc"],
        [False, "abc"],
        [None, "abc"],
        [1.5, "abc"],
        [[1], "abc"],
        [1, 2],
        [1, None],
        [1, ["abc"]],
    ],
)
def test_serializer_rejects_signed_payloads_of_the_wrong_shape(payload: t.Any) -> None:
    with pytest.raises(TokenInvalid):
        TokenSerializer([SECRET], max_age=60).loads(signed(payload))


@pytest.mark.parametrize(
    "salt", ["itsdangerous", "password-reset", "flask-confirm", SALT + "x"]
)
def test_serializer_rejects_a_foreign_salt(salt: str) -> None:
    token = signed([1, address_digest(EMAIL)], salt=salt)
    with pytest.raises(TokenInvalid):
        TokenSerializer([SECRET], max_age=60).loads(token)


def test_serializer_rejects_another_key() -> None:
    token = TokenSerializer(["another-secret-key"], max_age=60).dumps(1, EMAIL)
    with pytest.raises(TokenInvalid):
        TokenSerializer([SECRET], max_age=60).loads(token)


def test_serializer_signs_with_the_newest_key() -> None:
    rotated = TokenSerializer(["old-key", "new-key"], max_age=60)
    token = rotated.dumps(1, EMAIL)
    assert TokenSerializer(["new-key"], max_age=60).loads(token)[0] == 1
    with pytest.raises(TokenInvalid):
        TokenSerializer(["old-key"], max_age=60).loads(token)


# -- Confirm.make_token / Confirm.load_user -------------------------------------


def test_load_user_round_trip(db_app: Flask) -> None:
    add_user(db_app, "grace@example.org")
    user_id = add_user(db_app)
    token = make_token(db_app, user_id)
    assert load_user_id(db_app, token) == user_id


def test_load_user_expired(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_TOKEN_MAX_AGE=60)
    user_id = add_user(app)
    with freeze_time("2030-01-01 12:00:00") as frozen:
        token = make_token(app, user_id)
        frozen.tick(59)
        assert load_user_id(app, token) == user_id
        frozen.tick(2)
        with pytest.raises(TokenExpired):
            load_user_id(app, token)


def test_load_user_default_max_age_is_a_day(make_app: AppFactory) -> None:
    app = make_app()
    user_id = add_user(app)
    with freeze_time("2030-01-01 12:00:00") as frozen:
        token = make_token(app, user_id)
        frozen.tick(86400)
        assert load_user_id(app, token) == user_id
        frozen.tick(1)
        with pytest.raises(TokenExpired):
            load_user_id(app, token)


@pytest.mark.parametrize("part", [0, 1, 2], ids=["payload", "timestamp", "signature"])
def test_load_user_rejects_tampering(app: Flask, part: int) -> None:
    token = make_token(app, add_user(app))
    pieces = token.split(".")
    start = sum(len(p) + 1 for p in pieces[:part])
    with pytest.raises(TokenInvalid):
        load_user_id(app, flip(token, start + len(pieces[part]) // 2))


def test_load_user_rejects_a_foreign_salt(app: Flask) -> None:
    user_id = add_user(app)
    token = signed([user_id, address_digest(EMAIL)], key=app.secret_key, salt="other")
    with pytest.raises(TokenInvalid):
        load_user_id(app, token)


def test_load_user_rejects_the_session_cookie_serializer(app: Flask) -> None:
    user_id = add_user(app)
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    token = serializer.dumps([user_id, address_digest(EMAIL)])
    with pytest.raises(TokenInvalid):
        load_user_id(app, token)


def test_load_user_rejects_another_secret_key(app: Flask) -> None:
    user_id = add_user(app)
    token = signed([user_id, address_digest(EMAIL)], key="some-other-secret-key")
    # The same payload signed with the app's key is accepted: only the key differs.
    assert load_user_id(app, signed([user_id, address_digest(EMAIL)])) == user_id
    with pytest.raises(TokenInvalid):
        load_user_id(app, token)


@pytest.fixture()
def shared_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rotation.sqlite'}"


@pytest.fixture()
def extra_apps() -> cabc.Iterator[list[Flask]]:
    """Apps made with ``create_app`` directly (so their tables are not dropped
    and re-created); their engines are disposed afterwards."""
    apps: list[Flask] = []
    yield apps
    for app in apps:
        with app.app_context():
            models(app)["db"].engine.dispose()


def test_key_rotation_keeps_old_links_working(
    make_app: AppFactory,
    app_config: dict[str, t.Any],
    shared_db: str,
    extra_apps: list[Flask],
) -> None:
    old_app = make_app(SECRET_KEY="old-secret-key", SQLALCHEMY_DATABASE_URI=shared_db)
    user_id = add_user(old_app)
    old_token = make_token(old_app, user_id)

    rotated = create_app(
        **app_config,
        SECRET_KEY="new-secret-key",
        SECRET_KEY_FALLBACKS=["old-secret-key"],
        SQLALCHEMY_DATABASE_URI=shared_db,
    )
    without_fallback = create_app(
        **app_config, SECRET_KEY="new-secret-key", SQLALCHEMY_DATABASE_URI=shared_db
    )
    extra_apps.extend([rotated, without_fallback])

    assert load_user_id(rotated, old_token) == user_id
    with pytest.raises(TokenInvalid):
        load_user_id(without_fallback, old_token)

    # New links are signed with the new key.
    new_token = make_token(rotated, user_id)
    assert load_user_id(without_fallback, new_token) == user_id
    with pytest.raises(TokenInvalid):
        load_user_id(old_app, new_token)


def test_load_user_rejects_an_over_long_token(app: Flask) -> None:
    user_id = add_user(app)
    token = over_long([user_id, address_digest(EMAIL)])
    with pytest.raises(TokenInvalid):
        load_user_id(app, token)


def test_load_user_rejects_a_10mb_token_quickly(app: Flask) -> None:
    token = make_token(app, add_user(app))
    huge = token + "A" * (10 * 1024 * 1024)
    started = time.perf_counter()
    for _ in range(20):
        with pytest.raises(TokenInvalid):
            load_user_id(app, huge)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "payload",
    ["x", [True, "abc"], [1], [1, "abc", "c"], {"user": 1}, [None, "abc"], [1.0, "d"]],
)
def test_load_user_rejects_signed_payloads_of_the_wrong_shape(
    app: Flask, payload: t.Any
) -> None:
    add_user(app)
    with pytest.raises(TokenInvalid):
        load_user_id(app, signed(payload))


def test_load_user_rejects_a_true_user_id(app: Flask) -> None:
    # True == 1 in Python: a [True, digest] payload must not load user 1.
    user_id = add_user(app)
    assert user_id == 1
    with pytest.raises(TokenInvalid):
        load_user_id(app, signed([True, address_digest(EMAIL)]))


@pytest.mark.parametrize("user_id", ["not-a-number", 2**70], ids=["str", "huge-int"])
def test_load_user_rejects_an_id_the_primary_key_cannot_hold(
    db_app: Flask, user_id: t.Any
) -> None:
    # Well-formed for TokenSerializer (an int or str id), but not an id this
    # app's integer primary key can hold, e.g. a token of another app that
    # shares the secret key and uses string ids.
    add_user(db_app)
    with pytest.raises(TokenInvalid):
        load_user_id(db_app, signed([user_id, address_digest(EMAIL)]))
    # The app still works afterwards.
    assert load_user_id(db_app, make_token(db_app, 1)) == 1


def test_load_user_rejects_an_unknown_user(db_app: Flask) -> None:
    add_user(db_app)
    with pytest.raises(TokenInvalid):
        load_user_id(db_app, signed([999, address_digest(EMAIL)]))


def test_load_user_rejects_a_deleted_user(db_app: Flask) -> None:
    user_id = add_user(db_app)
    token = make_token(db_app, user_id)
    m = models(db_app)
    with db_app.app_context():
        m["db"].session.delete(m["db"].session.get(m["User"], user_id))
        m["db"].session.commit()
    with pytest.raises(TokenInvalid):
        load_user_id(db_app, token)


def test_load_user_rejects_a_changed_address(db_app: Flask) -> None:
    user_id = add_user(db_app)
    token = make_token(db_app, user_id)
    m = models(db_app)
    with db_app.app_context():
        m["db"].session.get(m["User"], user_id).email = "ada@example.com"
        m["db"].session.commit()
    with pytest.raises(TokenInvalid):
        load_user_id(db_app, token)
    # A link for the new address works; changing back revives the old one, as
    # the binding is to the address itself.
    assert load_user_id(db_app, make_token(db_app, user_id)) == user_id


def test_load_user_accepts_a_change_of_case_only(db_app: Flask) -> None:
    user_id = add_user(db_app, "ada@example.org")
    token = make_token(db_app, user_id)
    m = models(db_app)
    with db_app.app_context():
        m["db"].session.get(m["User"], user_id).email = "Ada@Example.ORG"
        m["db"].session.commit()
    assert load_user_id(db_app, token) == user_id


def test_load_user_rejects_a_cleared_address(db_app: Flask) -> None:
    # An app that anonymises an account may blank its address: the link dies.
    user_id = add_user(db_app)
    token = make_token(db_app, user_id)
    m = models(db_app)
    with db_app.app_context():
        m["db"].session.get(m["User"], user_id).email = ""
        m["db"].session.commit()
    with pytest.raises(TokenInvalid):
        load_user_id(db_app, token)


def test_tokens_of_one_user_do_not_load_another(db_app: Flask) -> None:
    ada = add_user(db_app, "ada@example.org")
    grace = add_user(db_app, "grace@example.org")
    # Grace's id with Ada's digest: a correctly signed token that matches no one.
    with pytest.raises(TokenInvalid):
        load_user_id(db_app, signed([grace, address_digest("ada@example.org")]))
    assert load_user_id(db_app, make_token(db_app, ada)) == ada
    assert load_user_id(db_app, make_token(db_app, grace)) == grace


@pytest.mark.parametrize("salt", [SALT, "flask-confirm.password-reset"])
def test_serializer_accepts_one_spelling_only(salt: str) -> None:
    """``=`` padding, or other unused low bits in the last character of the
    signature, decode to the same signature: refused all the same."""
    serializer = TokenSerializer([SECRET], max_age=60, salt=salt)
    token = serializer.sign(1, "digest")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    twins = [token[:-1] + alphabet[last ^ bits] for bits in (1, 2, 3)]
    for spelling in [token + "=", token + "==", *twins]:
        with pytest.raises(TokenInvalid):
            serializer.loads(spelling)
    assert serializer.loads(token) == (1, "digest")
