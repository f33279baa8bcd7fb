"""The :class:`Confirm` extension: the public face over the services.

Each method finds the current app's state and hands it to the service that
does the work (see ``docs/architecture.rst``); ``init_app`` is wiring only
(:mod:`.wiring`). Nothing below this module imports it.
"""

from __future__ import annotations

import typing as t

from typing_extensions import TypeVar  # default=, before Python 3.13

from . import links
from . import logins
from . import outbox
from . import store
from . import suppression
from .mail import kinds
from .models import ConfirmableMixin
from .models import primary_key
from .outbox import bulk
from .state import get_state
from .state import Hooks
from .suggestions import suggest
from .wiring import set_up

if t.TYPE_CHECKING:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from redis import Redis
    from rq import Queue

    from .senders import EmailMessage
    from .senders import Sender
    from .state import AppState
    from .state import DashboardAuth
    from .state import MailLocale
    from .state import PasswordSetter
    from .state import UserLoader

#: The app's user model, as :class:`Confirm` is typed over it: ``Confirm(app,
#: db=db, user_model=User)`` is a ``Confirm[User]`` whose :meth:`find_user`
#: returns ``User | None``; ``Confirm()`` with no model is ``Confirm[Any]``.
UserT = TypeVar("UserT", bound=ConfirmableMixin, default=t.Any)

_DashboardAuthT = t.TypeVar("_DashboardAuthT", bound="DashboardAuth")
_UserLoaderT = t.TypeVar("_UserLoaderT", bound="UserLoader")
_MailLocaleT = t.TypeVar("_MailLocaleT", bound="MailLocale")


class Confirm(t.Generic[UserT]):
    """Email-address confirmation for a Flask application.

    ``confirm = Confirm(); confirm.init_app(app, db=db, user_model=User)``,
    then ``confirm.send_confirmation(user)`` in the registration view. One
    instance may serve several applications; everything that belongs to an
    application is kept per application, not on the instance. It is generic
    over the user model: ``Confirm(app, db=db, user_model=User)`` is a
    ``Confirm[User]``; declare ``confirm: Confirm[User] = Confirm()`` when the
    model comes later; a bare ``Confirm()`` is ``Confirm[Any]``.

    :param app: call :meth:`init_app` with it straight away.
    :param db: the Flask-SQLAlchemy extension that holds ``user_model``.
    :param user_model: the user model, a :class:`.ConfirmableMixin` subclass.
    :param dashboard_auth: see :meth:`dashboard_auth`; ``user_loader``: see
        :meth:`user_loader`.
    :param password_setter: ``setter(user, password)`` stores a new password
        (hashing it) when :data:`CONFIRM_PASSWORD_RESET` is on; without one,
        the model's own ``set_password(password)`` method is called.
    :param redis: a redis-py client to use instead of one made from
        :data:`CONFIRM_REDIS_URL` (the app's shared pool, or a Sentinel
        client such as ``Sentinel(...).master_for("mymaster")``), for the
        queue, the worker, the limits and the dashboard. It must not decode
        responses (RQ stores bytes).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[UserT] | None = None,
        dashboard_auth: DashboardAuth | None = None,
        user_loader: UserLoader | None = None,
        password_setter: PasswordSetter | None = None,
        redis: Redis | None = None,
    ) -> None:
        self._db, self._user_model, self._redis = db, user_model, redis
        self._password_setter = password_setter
        #: The callbacks, shared with the state of every app this serves.
        self._hooks = Hooks(dashboard_auth=dashboard_auth, user_loader=user_loader)
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[UserT] | None = None,
        password_setter: PasswordSetter | None = None,
        redis: Redis | None = None,
    ) -> None:
        """Set up confirmation for ``app``: check the ``CONFIRM_*`` keys,
        register the ``confirm`` blueprint, the CLI commands, the protected
        RQ dashboard (unless :data:`CONFIRM_DASHBOARD_URL` is ``None``) and,
        with :data:`CONFIRM_BIND_SESSIONS`, bind Flask-Login sessions
        (:meth:`login_id`). The arguments override the constructor's.

        :raises ConfigError: a key cannot work; the message names it and the fix.
        :raises RuntimeError: this extension is already registered on ``app``.
        """
        set_up(
            app,
            db=db or self._db,
            user_model=user_model or self._user_model,
            password_setter=password_setter or self._password_setter,
            redis=redis if redis is not None else self._redis,
            hooks=self._hooks,
            extension=self,
        )

    def _get_state(self, app: Flask | None = None) -> AppState:
        return get_state(app)  # internal: the state of ``app``, or the current

    @property
    def sender(self) -> Sender:
        """The current app's sender, e.g. a :class:`.MemorySender` whose
        ``outbox`` a test reads."""
        return get_state().sender

    @property
    def queue(self) -> Queue:
        """The current app's RQ queue."""
        return get_state().queue

    def dashboard_auth(self, func: _DashboardAuthT) -> _DashboardAuthT:
        """Register the callable that lets the current request see the RQ
        dashboard when it returns true (or aborts, with a 401 say), such as
        ``lambda: current_user.is_admin``; without one, it answers 403."""
        self._hooks.dashboard_auth = func
        return func

    def user_loader(self, func: _UserLoaderT) -> _UserLoaderT:
        """Register the callable that returns the signed-in user (or ``None``)
        for :func:`.confirmed_required`. Not needed with Flask-Login, whose
        ``current_user`` is used when no loader is registered."""
        self._hooks.user_loader = func
        return func

    def mail_locale(self, func: _MailLocaleT) -> _MailLocaleT:
        """Register ``func(user)``, the locale of a user's mails (``"fr"``, or
        ``None`` for the default), for apps that translate with Flask-Babel:
        the worker has no request for the app's locale selector to read."""
        self._hooks.mail_locale = func
        return func

    def current_user(self) -> UserT | None:
        """The signed-in user, or ``None``: from :meth:`user_loader`, or from
        Flask-Login's ``current_user``.

        :raises RuntimeError: neither is available.
        """
        return t.cast("UserT | None", logins.current_user(get_state()))

    def send_confirmation(self, user: UserT) -> str | None:
        """Record that ``user`` is owed a link, **commit the session**, then
        queue the job that mails it, carrying only the id (see
        :doc:`reliability`: with Redis down, :meth:`sweep` queues it later).

        :return: the job id, or ``None`` if the job could not be queued.
        """
        return outbox.send_confirmation(get_state(), user)

    def request_email_change(self, user: UserT, new_email: str) -> str | None:
        """Keep ``new_email`` pending, commit, and queue a link to it and a
        notice to the current address, which stays the user's until the link
        is confirmed (see :doc:`accounts`).

        :raises InvalidEmail: ``new_email`` is not a usable address.
        :raises EmailInUse: another user has it, in any spelling.
        :raises ValueError: it is the user's current address.
        :return: the job id, or ``None`` if it could not be queued.
        """
        return outbox.request_email_change(get_state(), user, new_email)

    def request_password_reset(self, user: UserT) -> str | None:
        """Mail ``user`` a single-use link to the password reset form, if
        their address is confirmed. Nothing is stored: if Redis is down a
        warning is logged, ``None`` returned, and the user can ask again.

        :raises RuntimeError: :data:`CONFIRM_PASSWORD_RESET` is off.
        :return: the job id, or ``None`` if nothing was queued.
        """
        return outbox.request_password_reset(get_state(), user)

    def send_many(
        self, users: t.Iterable[UserT], *, batch_size: int | None = None
    ) -> int:
        """Request confirmations for many users in one commit, queued as jobs
        of ``batch_size`` (default :data:`CONFIRM_BATCH_SIZE`). How many."""
        return bulk.send_many(get_state(), users, batch_size)

    def resend_all(
        self,
        older_than: int | None = None,
        *,
        chunk_size: int = 1000,
        progress: t.Callable[[int, int], None] | None = None,
    ) -> int:
        """Request a new link for every unconfirmed user (failed ones too),
        optionally only those asked at least ``older_than`` seconds ago, one
        ``UPDATE`` per ``chunk_size``; ``progress(done, total)`` after each.
        How many."""
        return bulk.resend_all(get_state(), older_than, chunk_size, progress)

    def sweep(self, older_than: int | None = None, *, hold_lock: int = 0) -> int:
        """Queue again every confirmation requested at least ``older_than``
        seconds ago (default :data:`CONFIRM_SWEEP_AFTER`) and not yet sent;
        one sweep at a time, the lock kept ``hold_lock`` seconds after it.

        :return: how many were queued; 0 if another sweep holds the lock.
        """
        return bulk.sweep(get_state(), older_than, hold_lock)

    def status(self) -> dict[str, t.Any]:
        """Count users by :attr:`~.ConfirmableMixin.confirmation_state`:
        ``{"none", "requested", "sent", "failed", "confirmed": n,
        "oldest_pending": timedelta | None}``."""
        return bulk.status(get_state())

    def failed(self, limit: int | None = None) -> list[UserT]:
        """The users whose confirmation failed for good, most recent first;
        ``confirmation_error`` says why."""
        return bulk.failed(get_state(), limit)

    def retry_failed(self) -> int:
        """Request again, and queue, every confirmation that failed for good.
        How many."""
        return bulk.retry_failed(get_state())

    def mark_confirmed(
        self, users: t.Iterable[UserT] | None = None, *, existing: bool = False
    ) -> int:
        """Record ``users``, or with ``existing=True`` every user in state
        ``none``, as confirmed without a link and without a signal (a
        backfill: :doc:`existing-app`). How many were marked.

        :raises ValueError: neither or both of ``users`` and ``existing``.
        """
        if (users is None) == (not existing):
            raise ValueError("Pass either users or existing=True, not both.")
        user_ids = None if users is None else [primary_key(u) for u in users]
        return bulk.mark_confirmed(get_state(), user_ids)

    def make_token(self, user: UserT) -> str:
        """A new confirmation token, bound to the current address, or while a
        change is pending to that request (:func:`.tokens.change_digest`)."""
        return links.make_token(get_state(), user)

    def confirm_url(self, user: UserT) -> str:
        """A fresh confirmation link for ``user``, on
        :data:`CONFIRM_EXTERNAL_URL` (never the request's ``Host``)."""
        return links.confirm_url(get_state(), user)

    def load_user(self, token: str) -> UserT:
        """The user a confirmation token was made for.

        :raises TokenExpired: older than :data:`CONFIRM_TOKEN_MAX_AGE`.
        :raises TokenInvalid: bad, its user gone, or its address neither the
            user's current nor pending one.
        """
        return t.cast("UserT", links.resolve(get_state(), token)[0])

    def make_reset_token(self, user: UserT) -> str:
        """A password reset token for ``user``, bound to their address and
        password hash (:data:`CONFIRM_PASSWORD_HASH_ATTRIBUTE`)."""
        return links.make_reset_token(get_state(), user)

    def reset_url(self, user: UserT) -> str:
        """A fresh password reset link for ``user``."""
        return links.reset_url(get_state(), user)

    def load_reset_user(self, token: str) -> UserT:
        """The user a password reset token was made for.

        :raises TokenExpired: older than :data:`CONFIRM_PASSWORD_RESET_MAX_AGE`.
        :raises TokenInvalid: bad, used, or its user gone, changed address
            or unconfirmed.
        """
        return t.cast("UserT", links.load_reset_user(get_state(), token))

    def make_cancel_token(self, user: UserT) -> str:
        """A token for the "this wasn't me" link of ``user``'s pending change,
        bound to that request only.

        :raises ValueError: no change is pending.
        """
        return links.make_cancel_token(get_state(), user)

    def cancel_change_url(self, user: UserT) -> str:
        """A fresh "this wasn't me" link: ``GET`` shows a Cancel button
        (mail scanners open links), ``POST`` cancels.

        :raises ValueError: no change is pending.
        """
        return links.cancel_change_url(get_state(), user)

    def load_cancel_user(self, token: str) -> UserT:
        """The user whose pending change a cancel token is for.

        :raises TokenExpired: older than :data:`CONFIRM_TOKEN_MAX_AGE`.
        :raises TokenInvalid: bad, its user gone, or the change no longer
            pending.
        """
        return t.cast("UserT", links.load_cancel_user(get_state(), token))

    def render_message(self, user: UserT) -> EmailMessage:
        """The mail with ``user``'s confirmation link: ``confirm``, or
        ``email_change`` to the new address while a change is pending."""
        return kinds.confirmation(get_state(), user)

    def render_change_notice(self, user: UserT) -> EmailMessage:
        """The ``email_change_notice`` to ``user``'s current address, whose
        only link, ``cancel_url``, cancels the change."""
        return kinds.change_notice(get_state(), user)

    def render_reset_message(self, user: UserT) -> EmailMessage:
        """The ``password_reset`` mail for ``user``."""
        return kinds.password_reset(get_state(), user)

    def confirm_user(self, user: UserT) -> bool:
        """Mark ``user``'s address confirmed in one conditional ``UPDATE``,
        commit, and send :data:`.email_confirmed`; racing requests confirm
        once. ``False`` if it was confirmed already (nothing is done)."""
        return store.confirm_user(get_state(), user)

    def confirm_email_change(self, user: UserT, new_email: str) -> bool:
        """Make the pending ``new_email`` the confirmed address in one
        conditional ``UPDATE`` (which also requires that no other row holds
        it in any spelling), and send :data:`.email_changed` and
        :data:`.email_confirmed`. ``False`` if no such change is pending.

        :raises EmailInUse: someone else has the address; the change stays
            pending.
        """
        return store.confirm_email_change(get_state(), user, new_email)

    def cancel_email_change(self, user: UserT) -> bool:
        """Drop ``user``'s pending change in one conditional ``UPDATE`` and
        commit; its links stop working. Whether a change was pending."""
        return store.cancel_email_change(get_state(), user)

    def reset_password(self, user: UserT, password: str) -> bool:
        """Set ``user``'s password through the app's setter in one
        ``UPDATE`` conditional on the hash it replaces, cancel any pending
        change, commit, and send :data:`.password_reset`. ``False`` if
        another use of the same link won (nothing is changed).

        :raises RuntimeError: the setter did not change the hash attribute.
        """
        return store.reset_password(get_state(), user, password)

    def find_user(self, email: str) -> UserT | None:
        """The user with address ``email``, compared without regard to case
        or surrounding space, with the domain in either form
        (:func:`.addresses.lookup_keys`); among twins, a confirmed one first,
        then the earliest confirmed, then the lowest primary key."""
        return t.cast("UserT | None", store.find_user(get_state(), email))

    def suggest(self, address: str) -> str | None:
        """``address`` with its domain replaced by the common consumer domain
        it is most likely a typo of (``ada@gmial.com``: ``ada@gmail.com``),
        or ``None``: "did you mean ...?", as the resend form asks."""
        return suggest(address)

    def is_suppressed(self, address: str) -> bool:
        """Whether ``address``, in any spelling, is on the suppression list,
        which no mail goes to (see :ref:`suppression-list`)."""
        return suppression.is_suppressed(get_state(), address)

    def suppress(
        self,
        address: str,
        reason: str,
        *,
        source: str = "api",
        diagnostic: str | None = None,
    ) -> None:
        """Put ``address`` on the suppression list with ``reason``
        (``"hard_bounce"``, ``"complaint"``, ``"smtp_rejected"``,
        ``"manual"``), or record it as its latest, and **commit the
        session**; the worker mails it nothing from then on.

        :raises ValueError: an unknown ``reason``, or a ``source`` that is
            empty or over 32 characters.
        """
        suppression.suppress(
            get_state(), address, reason, source=source, diagnostic=diagnostic
        )

    def unsuppress(self, address: str) -> bool:
        """Take ``address`` off the suppression list and commit; whether it
        was on it (a failed confirmation to it goes out once asked again)."""
        return suppression.unsuppress(get_state(), address)

    def login_id(self, user: UserT) -> str:
        """The id Flask-Login keeps for ``user`` while
        :data:`CONFIRM_BIND_SESSIONS` is on: ``user.get_id()``, a dot, and an
        HMAC of the primary key, address and password hash, so a change of
        either ends every earlier session (see :doc:`accounts`).

        :raises RuntimeError: :data:`CONFIRM_BIND_SESSIONS` is off.
        """
        return logins.login_id(get_state(), user)
