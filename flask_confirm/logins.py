"""Flask-Login sessions bound to the credentials they were opened with.

Flask-Login keeps the user's id in the session and in the remember-me cookie,
and loads the user by that id on every request: a session or cookie stolen
before a password reset or an email change keeps working after it. Its
documentation's answer ("Alternative Tokens") is an id that changes when the
credentials change. This module gives every Flask-Login id of a user of the
app's model such an ending: ``<the app's own id>.<stamp>``, where the stamp is
an HMAC of the user's primary key, address and password hash. A reset, an
email change, or any other change of the password hash changes the stamp, and
every session and remember-me cookie issued before it stops loading a user.

It is wired with Flask-Login's public API only, for each app whose
:data:`CONFIRM_BIND_SESSIONS` is on:

- ``user_logged_in`` (sent by ``login_user`` after it stored the app's id in
  the session, before the remember-me cookie is written from it) adds the
  stamp to the stored id;
- ``user_accessed`` (sent just before Flask-Login calls the user loader)
  wraps the app's loader, whenever it was registered, in one that checks and
  strips the stamp and hands the app's own id to it.

Jobs and tokens never use these ids: they carry the primary key. Internal.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import logging
import typing as t
import weakref

from flask import current_app
from flask import session

from .config import Keys
from .models import email_of
from .models import primary_key

if t.TYPE_CHECKING:
    from flask import Flask

    from .state import AppState

logger = logging.getLogger("flask_confirm")

#: Between the app's own id and the stamp. The stamp (URL-safe base64) has
#: none, so the id is split at the last one whatever the app's id holds.
SEPARATOR = "."

#: Bytes of HMAC kept in a stamp (22 characters): unguessable, and short
#: enough for a cookie.
STAMP_BYTES = 16
STAMP_LENGTH = len(base64.urlsafe_b64encode(bytes(STAMP_BYTES)).rstrip(b"="))

#: The purpose the stamp keys are derived for, from each secret key.
PURPOSE = b"flask-confirm.login"

#: Marks a loader already wrapped by :func:`bound_loader`.
_WRAPPED = "_flask_confirm_bound"


@dataclasses.dataclass(frozen=True)
class Binding:
    """What one app's stamps are made from. Internal."""

    #: Stamp keys derived from ``[*SECRET_KEY_FALLBACKS, SECRET_KEY]``, oldest
    #: first: stamps are made with the last and accepted with any, so that a
    #: key rotation does not sign everybody out.
    keys: tuple[bytes, ...]
    user_model: type[t.Any]
    email_attribute: str
    password_hash_attribute: str

    def stamp(self, user: t.Any, key: bytes | None = None) -> str:
        """The stamp of ``user``'s current credentials."""
        stored = getattr(user, self.password_hash_attribute, None)
        material = "\0".join(
            [
                str(primary_key(user)),
                email_of(user, self.email_attribute).strip().lower(),
                "" if stored is None else str(stored),
            ]
        )
        digest = hmac.new(
            self.keys[-1] if key is None else key,
            material.encode("utf-8"),
            hashlib.sha256,
        ).digest()[:STAMP_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def matches(self, user: t.Any, stamp: str) -> bool:
        """Whether ``stamp`` is ``user``'s under any of the keys."""
        found = False
        for key in self.keys:  # all of them: no early exit to time
            found |= hmac.compare_digest(self.stamp(user, key), stamp)
        return found

    def login_id(self, app_id: str, user: t.Any) -> str:
        """The id to store for ``user``, whose own id is ``app_id``."""
        return f"{app_id}{SEPARATOR}{self.stamp(user)}"


def make_binding(
    secret_keys: t.Sequence[str | bytes],
    user_model: type[t.Any],
    email_attribute: str,
    password_hash_attribute: str,
) -> Binding:
    """Derive the stamp keys of one app. Internal."""
    keys = tuple(
        hmac.new(
            key.encode("utf-8") if isinstance(key, str) else key,
            PURPOSE,
            hashlib.sha256,
        ).digest()
        for key in secret_keys
    )
    return Binding(keys, user_model, email_attribute, password_hash_attribute)


#: The binding of every app that has one; the loader wrapper, which a login
#: manager shared by several apps calls for each, looks its app up here.
_bindings: weakref.WeakKeyDictionary[Flask, Binding] = weakref.WeakKeyDictionary()


def split(login_id: t.Any) -> tuple[str, str] | None:
    """``(app_id, stamp)`` of an id this module made, or ``None``."""
    if not isinstance(login_id, str):
        return None
    app_id, separator, stamp = login_id.rpartition(SEPARATOR)
    if not separator or not app_id or len(stamp) != STAMP_LENGTH:
        return None
    return app_id, stamp


def bound_loader(original: t.Callable[[str], t.Any]) -> t.Callable[[str], t.Any]:
    """Wrap the app's Flask-Login user loader: an id with a stamp gets the
    user only while the stamp matches the user's credentials; an id without
    one (a session from before, or from a test client that stores
    ``get_id()``) gets no user of the bound model."""

    @functools.wraps(original)
    def load(login_id: str) -> t.Any:
        from flask import current_app

        binding = _bindings.get(current_app._get_current_object())  # type: ignore[attr-defined]
        if binding is None:  # an app sharing the login manager, unbound
            return original(login_id)
        parts = split(login_id)
        if parts is None:
            user = original(login_id)
            if isinstance(user, binding.user_model):
                logger.info("A Flask-Login id without a credential stamp was refused.")
                return None
            return user  # another kind of user, which is not ours to bind
        app_id, stamp = parts
        user = original(app_id)
        if user is None:
            return None
        if not isinstance(user, binding.user_model) or not binding.matches(user, stamp):
            logger.info(
                "A Flask-Login session of user %r from before a change of"
                " password or address was refused.",
                primary_key(user) if isinstance(user, binding.user_model) else None,
            )
            return None
        return user

    setattr(load, _WRAPPED, True)
    return load


def wrap_loader(app: Flask) -> None:
    """Make sure ``app``'s login manager calls its loader through
    :func:`bound_loader`. Cheap when it does already."""
    manager = getattr(app, "login_manager", None)
    if manager is None:
        return
    callback = manager.user_callback
    if callback is not None and not getattr(callback, _WRAPPED, False):
        manager.user_loader(bound_loader(callback))


def bind(app: Flask, binding: Binding) -> None:
    """Bind ``app``'s Flask-Login sessions to the credentials, whenever
    Flask-Login is (or will be) set up on it. Does nothing without
    Flask-Login installed. Internal."""
    try:
        from flask_login.signals import user_accessed
        from flask_login.signals import user_logged_in
    except ImportError:
        return
    _bindings[app] = binding

    def stamp_login(sender: Flask, user: t.Any = None, **extra: t.Any) -> None:
        wrap_loader(sender)
        stored = session.get("_user_id")
        if isinstance(user, binding.user_model) and stored is not None:
            session["_user_id"] = binding.login_id(str(stored), user)

    def before_load(sender: Flask, **extra: t.Any) -> None:
        wrap_loader(sender)

    # Strong references, for the app's lifetime: the receivers are closures.
    user_logged_in.connect(stamp_login, app, weak=False)
    user_accessed.connect(before_load, app, weak=False)
    wrap_loader(app)


def current_user(state: AppState) -> t.Any | None:
    """The signed-in user, or ``None``: from :meth:`.Confirm.user_loader`, or from
    Flask-Login's ``current_user`` when the app uses Flask-Login.

    :raises RuntimeError: neither is available.
    """
    loader = state.hooks.user_loader
    if loader is not None:
        return loader()
    if getattr(current_app, "login_manager", None) is not None:
        from flask_login import current_user as login_user

        user = login_user._get_current_object()
        return user if user.is_authenticated else None
    raise RuntimeError(
        "confirmed_required needs to know who is signed in: set up"
        " Flask-Login, or register a loader with @confirm.user_loader."
    )


def login_id(state: AppState, user: t.Any) -> str:
    """Return the id Flask-Login keeps for ``user`` in the session and
    the remember-me cookie while :data:`CONFIRM_BIND_SESSIONS` is on: the
    app's own id (``user.get_id()``), a dot, and a stamp, an HMAC of the
    user's primary key, address and password hash. ``login_user`` stores
    it by itself; the app's user loader still receives its own id.

    A password reset, an email change or any other change of the
    password hash changes the stamp, and every session and remember-me
    cookie issued before it stops loading the user, the current
    browser's included (call ``login_user`` again after your own
    password change form to keep it). Store this as ``_user_id`` in a
    test client's session to sign a user in without the login view.

    :raises RuntimeError: :data:`CONFIRM_BIND_SESSIONS` is off.
    """
    if state.login_binding is None:
        raise RuntimeError(f"Sessions are not bound: {Keys.BIND_SESSIONS} is off.")
    manager = getattr(current_app, "login_manager", None)
    id_attribute = getattr(manager, "id_attribute", "get_id")
    get_id = getattr(user, id_attribute, None)
    app_id = str(get_id()) if callable(get_id) else str(primary_key(user))
    return state.login_binding.login_id(app_id, user)
