"""The :class:`Confirm` extension and its per-application state."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import typing as t
import weakref
from urllib.parse import urlsplit

from flask import current_app
from redis import Redis
from rq import Queue
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import aliased
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.elements import ColumnElement
from typing_extensions import TypeVar  # default=, before Python 3.13

from . import bulk
from . import logins
from . import signals
from .addresses import lookup_keys
from .addresses import normalize_email
from .config import Keys
from .config import load
from .config import Settings
from .connection import check_client
from .connection import connect
from .errors import ConfigError
from .errors import EmailInUse
from .errors import TokenInvalid
from .limits import RateLimiter
from .logins import make_binding
from .messages import compose
from .models import ConfirmableMixin
from .models import email_column
from .models import email_of
from .models import primary_key
from .models import target_address
from .models import user_key
from .models import utcnow
from .queueing import dispatch
from .senders import make_sender
from .tasks import make_job_class
from .tokens import address_digest
from .tokens import CANCEL_SALT
from .tokens import change_digest
from .tokens import reset_digest
from .tokens import RESET_SALT
from .tokens import TokenSerializer

if t.TYPE_CHECKING:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from rq.job import Job

    from .models import UserId
    from .models import UserKey
    from .senders import EmailMessage
    from .senders import Sender

logger = logging.getLogger("flask_confirm")

#: The app's user model, as :class:`Confirm` is typed over it: ``Confirm(app,
#: db=db, user_model=User)`` is a ``Confirm[User]`` whose :meth:`find_user`
#: returns ``User | None``; ``Confirm()`` with no model is ``Confirm[Any]``.
UserT = TypeVar("UserT", bound=ConfirmableMixin, default=t.Any)

DashboardAuth = t.Callable[[], bool]
_DashboardAuthT = t.TypeVar("_DashboardAuthT", bound=DashboardAuth)
UserLoader = t.Callable[[], t.Any]
_UserLoaderT = t.TypeVar("_UserLoaderT", bound=UserLoader)
PasswordSetter = t.Callable[[t.Any, str], None]
MailLocale = t.Callable[[t.Any], "str | None"]
_MailLocaleT = t.TypeVar("_MailLocaleT", bound=MailLocale)


@dataclasses.dataclass
class _State:
    """What :class:`Confirm` keeps for one application. Internal."""

    settings: Settings
    db: SQLAlchemy
    user_model: type[t.Any]
    #: The user model's primary key, and how ids become its values again.
    key: UserKey
    serializer: TokenSerializer
    reset_serializer: TokenSerializer
    #: Signs the "this wasn't me" links of email change notices.
    cancel_serializer: TokenSerializer
    password_setter: PasswordSetter | None
    sender: Sender
    #: The web side's client: the queue, the limits, the locks, the sweeps,
    #: the dashboard.
    redis: Redis
    #: Whether :attr:`redis` was handed to :meth:`Confirm.init_app` (then the
    #: worker uses it too) rather than made from :data:`CONFIRM_REDIS_URL`.
    redis_given: bool
    queue: Queue
    job_class: type[Job]
    limiter: RateLimiter
    #: How Flask-Login ids are stamped (:mod:`.logins`); ``None`` when
    #: :data:`CONFIRM_BIND_SESSIONS` is off.
    login_binding: logins.Binding | None


class Confirm(t.Generic[UserT]):
    """Email-address confirmation for a Flask application.

    .. code-block:: python

        confirm = Confirm()
        confirm.init_app(app, db=db, user_model=User)

        # in the registration view, after committing the new user:
        confirm.send_confirmation(user)

    One instance may serve several applications; everything that belongs to an
    application is kept per application, not on the instance.

    It is generic over the user model, so that typed apps need no casts:
    ``Confirm(app, db=db, user_model=User)`` is a ``Confirm[User]``, whose
    :meth:`find_user` returns ``User | None`` and :meth:`load_user` a
    ``User``. When the model is given to :meth:`init_app` later, declare
    ``confirm: Confirm[User] = Confirm()``; a bare ``Confirm()`` is
    ``Confirm[Any]``, whose users are ``Any`` as before.

    :param app: call :meth:`init_app` with it straight away.
    :param db: the Flask-SQLAlchemy extension that holds ``user_model``.
    :param user_model: the user model, a :class:`.ConfirmableMixin` subclass.
    :param dashboard_auth: a callable that returns true to let the current
        request see the RQ dashboard; see :meth:`dashboard_auth`.
    :param user_loader: a callable that returns the signed-in user or
        ``None``, for :func:`.confirmed_required`; see :meth:`user_loader`.
    :param password_setter: ``setter(user, password)`` stores a new password
        (hashing it) when :data:`CONFIRM_PASSWORD_RESET` is on; without one,
        the model's own ``set_password(password)`` method is called.
    :param redis: a redis-py client to use instead of one made from
        :data:`CONFIRM_REDIS_URL`, for the queue, the worker, the rate limits
        and the dashboard: the app's own shared pool, or a Sentinel client
        such as ``Sentinel(...).master_for("mymaster")``. It must not decode
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
        self._db = db
        self._redis = redis
        self._password_setter = password_setter
        self._user_loader: UserLoader | None = user_loader
        self._user_model = user_model
        self._dashboard_auth: DashboardAuth | None = dashboard_auth
        self._mail_locale: MailLocale | None = None
        self._states: weakref.WeakKeyDictionary[Flask, _State] = (
            weakref.WeakKeyDictionary()
        )
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
        """Set up confirmation for ``app``.

        Reads and checks the ``CONFIRM_*`` configuration, registers the
        ``confirm`` blueprint, the ``flask confirm-worker`` command and, unless
        :data:`CONFIRM_DASHBOARD_URL` is ``None``, the protected RQ dashboard.
        With :data:`CONFIRM_BIND_SESSIONS` on (the default), the app's
        Flask-Login sessions and remember-me cookies, if it uses Flask-Login
        (set up before or after this call), are bound to the user's address
        and password hash: see :meth:`login_id`.

        :param db: overrides the ``db`` given to the constructor.
        :param user_model: overrides the ``user_model`` given to the constructor.
        :param password_setter: overrides the one given to the constructor.
        :param redis: overrides the client given to the constructor; with
            neither, one is made from :data:`CONFIRM_REDIS_URL`.
        :raises ConfigError: a key cannot work; the message names it and the fix.
        :raises RuntimeError: this extension is already registered on ``app``.
        """
        if "confirm" in app.extensions:
            raise RuntimeError(
                "Flask-Confirm is already registered on this app. Call init_app"
                " once per app; to change settings, change app.config before it."
            )
        db = db or self._db
        user_model = user_model or self._user_model
        if db is None or user_model is None:
            raise ConfigError(
                "Flask-Confirm needs the database and the user model: call"
                " init_app(app, db=db, user_model=User), or pass them to Confirm()."
            )
        _check_user_model(user_model)
        settings = load(app)  # checks SECRET_KEY too
        key = user_key(user_model)
        email_column(user_model, settings.email_attribute)
        password_setter = password_setter or self._password_setter
        if settings.password_reset:
            _check_password_reset(settings, user_model, password_setter)
        secret_keys: list[str | bytes] = [
            *(app.config.get("SECRET_KEY_FALLBACKS") or ()),
            t.cast("str | bytes", app.secret_key),
        ]
        if redis is None:
            redis = self._redis
        if redis is not None:
            try:
                check_client(redis, "redis=")
            except (TypeError, ValueError) as e:
                raise ConfigError(str(e)) from None
        redis_given = redis is not None
        if redis is None:
            # Bounded timeouts: a Redis that is down or hangs must cost a
            # request seconds at most, not the whole request.
            redis = connect(
                settings.redis_url,
                socket_connect_timeout=2,
                socket_timeout=5,
                health_check_interval=30,
            )
        job_class = make_job_class(app)
        login_binding = (
            make_binding(
                secret_keys,
                user_model,
                settings.email_attribute,
                settings.password_hash_attribute,
            )
            if settings.bind_sessions
            else None
        )
        state = _State(
            settings=settings,
            db=db,
            user_model=user_model,
            key=key,
            serializer=TokenSerializer(secret_keys, settings.token_max_age),
            reset_serializer=TokenSerializer(
                secret_keys, settings.password_reset_max_age, salt=RESET_SALT
            ),
            cancel_serializer=TokenSerializer(
                secret_keys, settings.token_max_age, salt=CANCEL_SALT
            ),
            password_setter=password_setter,
            sender=make_sender(app, settings),
            redis=redis,
            redis_given=redis_given,
            queue=Queue(settings.queue, connection=redis, job_class=job_class),
            job_class=job_class,
            # Keyed per purpose from the secret keys, so every instance of the
            # app shares the limits and nobody else can compute the keys; all
            # of them, so that a rotation keeps the limits (RateLimiter).
            limiter=RateLimiter(
                redis,
                [
                    hmac.new(_as_bytes(k), b"flask-confirm.limits", "sha256").digest()
                    for k in secret_keys
                ],
            ),
            login_binding=login_binding,
        )
        self._states[app] = state
        app.extensions["confirm"] = self
        if login_binding is not None:
            logins.bind(app, login_binding)

        from .cli import confirm_group
        from .cli import worker_command
        from .views import create_blueprint

        app.register_blueprint(create_blueprint(settings))
        app.cli.add_command(worker_command)
        app.cli.add_command(confirm_group)
        if settings.dashboard_url is not None:
            from .dashboard import mount_dashboard

            mount_dashboard(app, self)

    def _get_state(self, app: Flask | None = None) -> _State:
        if app is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        try:
            return self._states[app]
        except KeyError:
            raise RuntimeError(
                "Flask-Confirm is not registered on this app. Did you forget to"
                " call 'confirm.init_app(app, db=db, user_model=User)'?"
            ) from None

    @property
    def sender(self) -> Sender:
        """The current app's sender, e.g. a :class:`.MemorySender` whose
        ``outbox`` a test reads."""
        return self._get_state().sender

    @property
    def queue(self) -> Queue:
        """The current app's RQ queue."""
        return self._get_state().queue

    def dashboard_auth(self, func: _DashboardAuthT) -> _DashboardAuthT:
        """Register the callable that decides who may see the RQ dashboard.

        It is called with no arguments for every dashboard request, inside the
        request context, and returns true to let it through. Without one, every
        dashboard request is answered 403. It may also abort itself, for example
        with a 401 that asks for HTTP basic auth.

        .. code-block:: python

            @confirm.dashboard_auth
            def is_admin() -> bool:
                return current_user.is_authenticated and current_user.is_admin
        """
        self._dashboard_auth = func
        return func

    def user_loader(self, func: _UserLoaderT) -> _UserLoaderT:
        """Register the callable that returns the signed-in user (or ``None``)
        for :func:`.confirmed_required`. Not needed with Flask-Login, whose
        ``current_user`` is used when no loader is registered."""
        self._user_loader = func
        return func

    def mail_locale(self, func: _MailLocaleT) -> _MailLocaleT:
        """Register the callable that names the locale of a user's mails (such
        as ``"fr"``, or ``None`` for the default), for apps that translate
        with Flask-Babel.

        Mails are rendered by the worker, where there is no request for the
        app's locale selector to read; without this, they are rendered in the
        app's default locale (or, when sent inline during a request, the
        request's).

        .. code-block:: python

            @confirm.mail_locale
            def locale_of(user) -> str | None:
                return user.locale
        """
        self._mail_locale = func
        return func

    def _locale_for(self, user: UserT) -> str | None:
        return None if self._mail_locale is None else self._mail_locale(user)

    def current_user(self) -> UserT | None:
        """The signed-in user, or ``None``: from :meth:`user_loader`, or from
        Flask-Login's ``current_user`` when the app uses Flask-Login.

        :raises RuntimeError: neither is available.
        """
        if self._user_loader is not None:
            return t.cast("UserT | None", self._user_loader())
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if getattr(app, "login_manager", None) is not None:
            from flask_login import current_user

            user = current_user._get_current_object()
            return user if user.is_authenticated else None
        raise RuntimeError(
            "confirmed_required needs to know who is signed in: set up"
            " Flask-Login, or register a loader with @confirm.user_loader."
        )

    def send_confirmation(self, user: UserT) -> str | None:
        """Ask for a confirmation link to be mailed to ``user``, durably.

        Records the request on the user (``confirmation_requested_at``) and
        **commits the session**, then enqueues a job that carries only the
        user's id. Call it in place of your own commit, so that a new user and
        the request for their confirmation land in the same transaction, or
        after it. The job is enqueued only once the row is committed, and the
        mail is rendered and sent by the worker: the request never waits for
        the mail provider.

        The database, not Redis, holds the request: if Redis cannot be reached
        a warning is logged, ``None`` is returned and the caller's request still
        succeeds; :meth:`sweep` (``flask confirm sweep``, or a worker run
        ``--with-scheduler``) enqueues it again later. With
        :data:`CONFIRM_ASYNC` false the job runs here, at once, and a failure
        to send is logged and signalled rather than raised.

        :return: the job id, or ``None`` if the job could not be queued.
        """
        job_id = self._request_link(user)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.confirmation_requested.send(app, user=user, job_id=job_id)
        return job_id

    def _request_link(self, user: UserT) -> str | None:
        """Record that a link is owed to ``user`` (for the address in
        :func:`.models.target_address`), commit, then queue it. Internal."""
        state = self._get_state()
        user.confirmation_requested_at = utcnow()
        state.db.session.add(user)
        state.db.session.commit()
        return dispatch(state, "confirm", primary_key(user))

    def request_email_change(self, user: UserT, new_email: str) -> str | None:
        """Start changing ``user``'s address to ``new_email``.

        The new address is kept in :attr:`~.ConfirmableMixin.pending_email`
        and the request committed, as :meth:`send_confirmation` does; the
        worker mails a link to the new address and, just before it, a notice
        to the current one, whose "this wasn't me" link cancels the change
        (:meth:`cancel_change_url`). The address changes only when the link
        is confirmed; a password reset cancels the change. Until then the
        user keeps the current address, confirmed or not; a link mailed for
        an earlier change stops working, and once
        the change is made so does every link for the old address. The same
        delivery guarantee as for confirmations applies to the link and the
        notice (sweeps, retries, ``status``); the notice goes out once per
        request however often the link is retried, and a notice the old
        mailbox refuses does not hold up the link.

        :raises InvalidEmail: ``new_email`` is not a usable address.
        :raises EmailInUse: another user has that address already, in any
            spelling (:func:`.addresses.lookup_keys`: case, the punycode or
            Unicode form of the domain).
        :raises ValueError: it is the user's current address.
        :return: the id of the job that mails the link, or ``None`` if it
            could not be queued (the sweeper queues it later).
        """
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._get_state()
        new_email = normalize_email(new_email)
        old_email = email_of(user, state.settings.email_attribute)
        if set(lookup_keys(new_email)) & set(lookup_keys(old_email)):
            raise ValueError("The new address is the user's current address.")
        taken = select(_used_by_another(state, user, new_email))
        if state.db.session.scalar(taken):
            raise EmailInUse("Another user has that address already.")
        user.pending_email = new_email
        job_id = self._request_link(user)
        signals.email_change_requested.send(
            app, user=user, new_email=new_email, job_id=job_id
        )
        return job_id

    def cancel_email_change(self, user: UserT) -> bool:
        """Drop ``user``'s pending email change, if any, and commit; its link
        stops working, and so does the "this wasn't me" link of its notice.

        One conditional ``UPDATE`` does it, so that a change confirmed in the
        meantime is not reported as cancelled.

        :return: whether a change was pending (and is now cancelled).
        """
        pending = user.pending_email
        if pending is None:
            return False
        state = self._get_state()
        model = state.user_model
        return self._update_user(
            state, user, [model.pending_email == pending], {model.pending_email: None}
        )

    def make_cancel_token(self, user: UserT) -> str:
        """Return a token for the "this wasn't me" link of the notice about
        ``user``'s pending email change. It has a salt of its own and is
        bound to that request (the new address and the time it was asked
        for), so it cancels that change only: not a later request, to the
        same address or another.

        :raises ValueError: no change is pending.
        """
        if user.pending_email is None:
            raise ValueError("No email change is pending for this user.")
        state = self._get_state()
        return state.cancel_serializer.sign(
            primary_key(user),
            change_digest(user.pending_email, user.confirmation_requested_at),
        )

    def cancel_change_url(self, user: UserT) -> str:
        """Return a fresh "this wasn't me" link for ``user``'s pending email
        change, as the notice to the current address carries. ``GET`` shows a
        Cancel button (mail scanners open links); ``POST`` cancels.

        :raises ValueError: no change is pending.
        """
        return self._external_url("confirm.cancel_change", self.make_cancel_token(user))

    def load_cancel_user(self, token: str) -> UserT:
        """Return the user whose pending email change a cancel token is for.

        :raises TokenExpired: older than :data:`CONFIRM_TOKEN_MAX_AGE`.
        :raises TokenInvalid: the token is bad, its user is gone, or the
            change it was made for is no longer pending (it was made,
            cancelled, or replaced by a newer request).
        """
        state = self._get_state()
        user_id, digest = state.cancel_serializer.loads(token)
        user = self._get_user(state, user_id)
        pending = user.pending_email
        if pending is None or not hmac.compare_digest(
            change_digest(pending, user.confirmation_requested_at), digest
        ):
            raise TokenInvalid("The change this link cancels is no longer pending.")
        return user

    def request_password_reset(self, user: UserT) -> str | None:
        """Mail ``user`` a link to the password reset form.

        Needs :data:`CONFIRM_PASSWORD_RESET`. Does nothing for a user whose
        address is not confirmed: a reset link is only as safe as the address
        it goes to. The link is made by the worker when it sends, binds the
        user's address and current password hash, and so works once. Nothing
        is stored: if Redis cannot be reached, a warning is logged and
        ``None`` returned, and the user can simply ask again.

        :raises RuntimeError: :data:`CONFIRM_PASSWORD_RESET` is off.
        :return: the job id, or ``None`` if nothing was queued.
        """
        state = self._get_state()
        if not state.settings.password_reset:
            raise RuntimeError(
                f"Password reset is off: set {Keys.PASSWORD_RESET} = True."
            )
        if not user.email_confirmed:
            logger.info("Password reset refused: address not confirmed.")
            return None
        user_id = primary_key(user)
        job_id = dispatch(state, "password_reset", user_id)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.password_reset_requested.send(app, user=user, job_id=job_id)
        return job_id

    def send_many(
        self, users: t.Iterable[UserT], *, batch_size: int | None = None
    ) -> int:
        """Ask for confirmations for many users at once (a migration, a
        re-send to everyone unconfirmed): one commit, then jobs of
        ``batch_size`` users each (default :data:`CONFIRM_BATCH_SIZE`), queued
        in pipelined round trips. Each batch job sends over one connection, with
        the same per-user state, locking and retry rules as single sends.

        :return: how many confirmations were requested.
        """
        return bulk.send_many(self._get_state(), users, batch_size)

    def resend_all(
        self,
        older_than: int | None = None,
        *,
        chunk_size: int = 1000,
        progress: t.Callable[[int, int], None] | None = None,
    ) -> int:
        """Request a new link for every unconfirmed user (a migration, a
        change of provider), optionally only those whose last request is at
        least ``older_than`` seconds old. Users whose confirmation failed for
        good are included: asking again is the point of a bulk re-send.

        Works through the users ``chunk_size`` at a time: one ``UPDATE`` and
        commit per chunk, then its batch jobs queued in pipelined round trips.

        :param progress: called after each chunk with the number of users in
            it and the total.
        :return: how many confirmations were requested.
        """
        return bulk.resend_all(self._get_state(), older_than, chunk_size, progress)

    def sweep(self, older_than: int | None = None, *, hold_lock: int = 0) -> int:
        """Queue again every confirmation requested but not yet sent.

        This is what makes a request survive Redis being down when it was made,
        a worker killed in the middle of a job, or retries running out: the
        database remembers what is owed. Confirmations that failed for good
        are left alone (see :meth:`retry_failed`).

        Safe to run from many processes at once: a lock in Redis lets one
        sweep run at a time, and a job queued twice sends once.

        :param older_than: only confirmations requested at least this many
            seconds ago (default :data:`CONFIRM_SWEEP_AFTER`; 0 means all),
            which leaves the ones whose first job is still on its way.
        :param hold_lock: keep the lock this many seconds after the sweep, so
            that periodic sweeps on many workers run once per period.
        :return: how many confirmations were queued (in jobs of
            :data:`CONFIRM_BATCH_SIZE`); 0 if another sweep holds the lock.
        """
        return bulk.sweep(self._get_state(), older_than, hold_lock)

    def status(self) -> dict[str, t.Any]:
        """Count users by :attr:`~.ConfirmableMixin.confirmation_state`.

        :return: ``{"none": n, "requested": n, "sent": n, "failed": n,
            "confirmed": n, "oldest_pending": timedelta | None}``, where
            ``none`` counts the users never asked to confirm (accounts older
            than Flask-Confirm, say; see :meth:`mark_confirmed`), and
            ``oldest_pending`` is the age of the oldest request not yet
            accepted by the provider.
        """
        return bulk.status(self._get_state())

    def failed(self, limit: int | None = None) -> list[UserT]:
        """The users whose confirmation failed for good, most recent first;
        ``confirmation_error`` says why."""
        return bulk.failed(self._get_state(), limit)

    def retry_failed(self) -> int:
        """Request again every confirmation that failed for good (after the
        cause is fixed, say), and queue them.

        :return: how many were queued again.
        """
        return bulk.retry_failed(self._get_state())

    def mark_confirmed(
        self,
        users: t.Iterable[UserT] | None = None,
        *,
        existing: bool = False,
    ) -> int:
        """Record addresses as confirmed without a link: the backfill for an
        app that adds Flask-Confirm to users it already has and trusts.

        After the migration that adds the mixin's columns every existing user
        is in state ``none``: :func:`.confirmed_required` turns them away,
        password reset mails them nothing, and nothing will ever mail them a
        link. ``existing=True`` marks every such user confirmed (or call
        :meth:`resend_all` to ask them all to confirm instead). Users who were
        asked to confirm and have not (states ``requested``, ``sent``,
        ``failed``) are never touched by it.

        Works on the database directly, 1,000 users per ``UPDATE`` and commit,
        so a large table is fine. No :data:`.email_confirmed` signal is sent:
        nobody confirmed anything, and a receiver that welcomes new users
        must not mail every existing one.

        :param users: mark these users (those already confirmed are left as
            they are). Give either this or ``existing=True``.
        :param existing: mark every user in state ``none``: never asked to
            confirm, no email change pending.
        :return: how many users were marked.
        :raises ValueError: neither or both of ``users`` and ``existing``.
        """
        if (users is None) == (not existing):
            raise ValueError("Pass either users or existing=True, not both.")
        state = self._get_state()
        user_ids = None if users is None else [primary_key(u) for u in users]
        return bulk.mark_confirmed(state, user_ids)

    def make_token(self, user: UserT) -> str:
        """Return a new confirmation token for the address ``user`` is
        confirming: the current address, bound to it
        (:func:`.tokens.address_digest`); or, while an email change is
        pending, bound to that request, the new address and the time it was
        asked for (:func:`.tokens.change_digest`), so that a newer request,
        even to the same address, kills every earlier change link."""
        state = self._get_state()
        return state.serializer.sign(primary_key(user), _link_binding(state, user))

    def load_user(self, token: str) -> UserT:
        """Return the user a confirmation token was made for.

        :raises TokenExpired: the token is older than :data:`CONFIRM_TOKEN_MAX_AGE`.
        :raises TokenInvalid: the token is bad, its user is gone, or the
            address it was made for is neither the user's current address nor
            their pending new one.
        """
        return self._resolve(token)[0]

    def _resolve(self, token: str) -> tuple[UserT, str]:
        """Return the user of a confirmation token and the address it
        confirms (the current one, or the pending new one). Internal."""
        state = self._get_state()
        user_id, digest = state.serializer.loads(token)
        user = self._get_user(state, user_id)
        pending = user.pending_email
        if pending and hmac.compare_digest(
            change_digest(pending, user.confirmation_requested_at), digest
        ):
            return user, pending
        current = getattr(user, state.settings.email_attribute, None)
        if isinstance(current, str) and current:
            # The change link that made the current address is still its
            # own: used again, it answers as a used confirmation link does.
            made_by = change_digest(current, user.confirmation_requested_at)
            for binding in (address_digest(current), made_by):
                if hmac.compare_digest(binding, digest):
                    return user, current
        raise TokenInvalid("The token's user or address is no longer current.")

    def _get_user(self, state: _State, user_id: UserId) -> UserT:
        try:
            user = state.db.session.get(state.user_model, state.key.value(user_id))
        except (SQLAlchemyError, OverflowError, ValueError, TypeError) as e:
            # A signed id the primary key's type cannot hold (a token of a
            # different app sharing the key, say) is as good as no user.
            state.db.session.rollback()
            raise TokenInvalid("The token's user id cannot be looked up.") from e
        if user is None:
            raise TokenInvalid("The token's user no longer exists.")
        return t.cast("UserT", user)

    def confirm_url(self, user: UserT) -> str:
        """Return a fresh confirmation link for ``user`` (for the pending new
        address while an email change is pending).

        Links are built on :data:`CONFIRM_EXTERNAL_URL`, never on the current
        request, so a forged ``Host`` header cannot change what is mailed.
        """
        return self._external_url("confirm.confirm_email", self.make_token(user))

    def _external_url(self, endpoint: str, token: str) -> str:
        state = self._get_state()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        base = urlsplit(state.settings.external_url)
        adapter = app.url_map.bind(
            base.netloc, script_name=base.path or "/", url_scheme=base.scheme
        )
        return adapter.build(  # type: ignore[no-any-return]
            endpoint, {"token": token}, force_external=True
        )

    def render_message(self, user: UserT) -> EmailMessage:
        """Render the mail with ``user``'s confirmation link: the ``confirm``
        message to the current address, or, while an email change is pending,
        the ``email_change`` message to the new one (see :mod:`.messages`)."""
        settings = self._get_state().settings
        kind = "email_change" if user.pending_email is not None else "confirm"
        return compose(
            settings,
            kind,
            target_address(user, settings.email_attribute),
            locale=self._locale_for(user),
            user=user,
            confirm_url=self.confirm_url(user),
            valid_for=settings.token_max_age,
        )

    def render_change_notice(self, user: UserT) -> EmailMessage:
        """Render the ``email_change_notice`` mail to ``user``'s current
        address about their pending new one. Its only link, ``cancel_url``,
        is the "this wasn't me" link that cancels the change
        (:meth:`cancel_change_url`)."""
        settings = self._get_state().settings
        return compose(
            settings,
            "email_change_notice",
            email_of(user, settings.email_attribute),
            locale=self._locale_for(user),
            user=user,
            new_email=target_address(user, settings.email_attribute),
            cancel_url=self.cancel_change_url(user),
            valid_for=settings.token_max_age,
        )

    def confirm_user(self, user: UserT) -> bool:
        """Mark ``user``'s address confirmed, commit, and send
        :data:`.email_confirmed`.

        One conditional ``UPDATE`` does it, so that two requests racing with
        the same link confirm once and signal once, and an address changed in
        the meantime is not confirmed in its place.

        :return: ``False`` if it was already confirmed (nothing is done then).
        """
        if user.email_confirmed:
            return False
        state = self._get_state()
        model = state.user_model
        attribute = state.settings.email_attribute
        done = self._update_user(
            state,
            user,
            [
                getattr(model, attribute) == email_of(user, attribute),
                model.email_confirmed_at.is_(None),
            ],
            {model.email_confirmed_at: utcnow()},
        )
        if done:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            signals.email_confirmed.send(app, user=user)
        return done

    def confirm_email_change(self, user: UserT, new_email: str) -> bool:
        """Complete ``user``'s pending change to ``new_email``: it becomes the
        confirmed address, in one conditional ``UPDATE``, and
        :data:`.email_changed` and :data:`.email_confirmed` are sent.

        The ``UPDATE`` also requires that no other row holds ``new_email``
        in any spelling (``NOT EXISTS``, case-insensitively, either form of
        the domain), so that an account registered with ``SHARED@...``
        after a change to ``shared@...`` was asked for does not end up with
        a twin. That check runs inside the statement; only a unique index
        on ``lower(email)`` also closes the moment between two transactions
        committing at once (see :ref:`unique-lower-email`).

        :return: ``False`` if no change to ``new_email`` is pending (it was
            made already, or cancelled, or replaced by another).
        :raises EmailInUse: someone else has the address (the ``NOT
            EXISTS`` or the database's unique constraint said so); the
            change stays pending.
        """
        state = self._get_state()
        model = state.user_model
        attribute = state.settings.email_attribute
        old_email = email_of(user, attribute)
        try:
            done = self._update_user(
                state,
                user,
                [
                    model.pending_email == new_email,
                    _same_time(
                        model.confirmation_requested_at, user.confirmation_requested_at
                    ),
                    ~_used_by_another(state, user, new_email),
                ],
                {
                    getattr(model, attribute): new_email,
                    model.pending_email: None,
                    model.email_confirmed_at: utcnow(),
                },
            )
        except IntegrityError as e:
            state.db.session.rollback()
            raise EmailInUse("Another user has that address already.") from e
        if not done and state.db.session.scalar(
            select(_used_by_another(state, user, new_email))
        ):
            raise EmailInUse("Another user has that address already.")
        if done:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            signals.email_changed.send(app, user=user, old_email=old_email)
            signals.email_confirmed.send(app, user=user)
        return done

    def _update_user(
        self,
        state: _State,
        user: UserT,
        conditions: list[t.Any],
        values: dict[t.Any, t.Any],
    ) -> bool:
        """``UPDATE`` ``user``'s row with ``values`` (keyed by the model's
        attributes) if ``conditions`` still hold, and commit (which expires
        ``user``, so it reloads what was stored). Whether a row changed.
        Internal."""
        model = state.user_model
        key = state.key
        result = state.db.session.execute(
            update(model)
            .where(key.column == key.value(primary_key(user)), *conditions)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        state.db.session.commit()
        return getattr(result, "rowcount", 0) == 1

    def make_reset_token(self, user: UserT) -> str:
        """Return a password-reset token for ``user``, bound to their address
        and current password hash (:data:`CONFIRM_PASSWORD_HASH_ATTRIBUTE`)."""
        state = self._get_state()
        return state.reset_serializer.sign(
            primary_key(user), _reset_binding(state, user)
        )

    def reset_url(self, user: UserT) -> str:
        """Return a fresh password-reset link for ``user``."""
        return self._external_url("confirm.reset_password", self.make_reset_token(user))

    def load_reset_user(self, token: str) -> UserT:
        """Return the user a password-reset token was made for.

        :raises TokenExpired: older than :data:`CONFIRM_PASSWORD_RESET_MAX_AGE`.
        :raises TokenInvalid: the token is bad, was used already (the password
            changed), or its user is gone, changed address or is unconfirmed.
        """
        state = self._get_state()
        user_id, digest = state.reset_serializer.loads(token)
        user = self._get_user(state, user_id)
        if not user.email_confirmed or not hmac.compare_digest(
            _reset_binding(state, user), digest
        ):
            raise TokenInvalid("The reset token is used, stale or not for this user.")
        return user

    def render_reset_message(self, user: UserT) -> EmailMessage:
        """Render the ``password_reset`` mail for ``user``."""
        settings = self._get_state().settings
        return compose(
            settings,
            "password_reset",
            email_of(user, settings.email_attribute),
            locale=self._locale_for(user),
            user=user,
            reset_url=self.reset_url(user),
            valid_for=settings.password_reset_max_age,
        )

    def reset_password(self, user: UserT, password: str) -> bool:
        """Set ``user``'s password through the app's setter, cancel any
        pending email change, commit, and send :data:`.password_reset`.

        The new hash is written by one ``UPDATE`` conditional on the hash it
        replaces (:data:`CONFIRM_PASSWORD_HASH_ATTRIBUTE`, as ``user`` was
        loaded) and on the address, so that of several requests racing with
        one reset link exactly one sets a password; the others change
        nothing. Everything else the setter changed is committed with it.
        The reset link dies with the old hash, and with
        :data:`CONFIRM_BIND_SESSIONS` so does every Flask-Login session and
        remember-me cookie of the user.

        :return: ``False`` if the password or the address changed since
            ``user`` was loaded (another use of the same link won); nothing is
            changed then.
        :raises RuntimeError: the setter did not change the hash attribute.
        """
        state = self._get_state()
        settings = state.settings
        model = state.user_model
        key = state.key
        attribute = settings.password_hash_attribute
        old_hash = getattr(user, attribute, None)
        email = email_of(user, settings.email_attribute)
        session = state.db.session
        # No autoflush: the ORM must not write the new hash before the
        # conditional UPDATE has checked the old one.
        with session.no_autoflush:
            setter = state.password_setter
            if setter is not None:
                setter(user, password)
            else:
                user.set_password(password)  # type: ignore[attr-defined]
            new_hash = getattr(user, attribute, None)
            if new_hash is None or new_hash == old_hash:
                session.rollback()
                raise RuntimeError(
                    f"The password setter did not change {model.__name__}.{attribute}"
                    f" ({Keys.PASSWORD_HASH_ATTRIBUTE}): name the attribute it sets,"
                    " since reset links are bound to it."
                )
            column = getattr(model, attribute)
            result = session.execute(
                update(model)
                .where(
                    key.column == key.value(primary_key(user)),
                    column.is_(None) if old_hash is None else column == old_hash,
                    getattr(model, settings.email_attribute) == email,
                )
                .values({column: new_hash, model.pending_email: None})
                .execution_options(synchronize_session=False)
            )
        if getattr(result, "rowcount", 0) != 1:
            session.rollback()
            logger.info("Password reset lost a race: the hash changed meanwhile.")
            return False
        session.commit()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.password_reset.send(app, user=user)
        return True

    def login_id(self, user: UserT) -> str:
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
        state = self._get_state()
        if state.login_binding is None:
            raise RuntimeError(f"Sessions are not bound: {Keys.BIND_SESSIONS} is off.")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        manager = getattr(app, "login_manager", None)
        id_attribute = getattr(manager, "id_attribute", "get_id")
        get_id = getattr(user, id_attribute, None)
        app_id = str(get_id()) if callable(get_id) else str(primary_key(user))
        return state.login_binding.login_id(app_id, user)

    def find_user(self, email: str) -> UserT | None:
        """Return the user with address ``email``, or ``None``.

        Addresses are compared without regard to case or surrounding space,
        and with the domain in either form, so ``carol@xn--bcher-kva.example``
        finds ``carol@bücher.example`` (:func:`.addresses.lookup_keys`).
        SQLite's ``lower()`` folds ASCII letters only, so there a stored
        capital non-ASCII letter matches only as stored.

        Where several rows match (twins stored before these rules, or by the
        app), the answer is deterministic: a user whose address is
        confirmed before one whose is not, then the earliest confirmed,
        then the lowest primary key (the oldest row, for keys that grow).
        """
        state = self._get_state()
        model = state.user_model
        column = getattr(model, state.settings.email_attribute)
        confirmed_at = model.email_confirmed_at
        query = (
            select(model)
            .where(func.lower(column).in_(lookup_keys(email)))
            .order_by(
                case((confirmed_at.is_(None), 1), else_=0),
                confirmed_at,
                state.key.column,
            )
        )
        return state.db.session.scalars(query.limit(1)).first()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _check_user_model(model: type[t.Any]) -> None:
    if not (isinstance(model, type) and issubclass(model, ConfirmableMixin)):
        raise ConfigError(
            f"user_model={model!r} must be a model class that inherits from"
            " flask_confirm.ConfirmableMixin."
        )


def _check_password_reset(
    settings: Settings, model: type[t.Any], setter: PasswordSetter | None
) -> None:
    if setter is None and not callable(getattr(model, "set_password", None)):
        raise ConfigError(
            f"{Keys.PASSWORD_RESET} is on, but Flask-Confirm does not know how to"
            f" set a password: give {model.__name__} a set_password(password)"
            " method, or pass password_setter=func(user, password) to Confirm()"
            " or init_app()."
        )
    hash_attribute = getattr(model, settings.password_hash_attribute, None)
    if not isinstance(hash_attribute, (QueryableAttribute, ColumnElement)):
        raise ConfigError(
            f"{Keys.PASSWORD_RESET} is on, but {model.__name__} has no mapped"
            f" column {settings.password_hash_attribute!r}"
            f" ({Keys.PASSWORD_HASH_ATTRIBUTE}). Reset links are bound to the"
            " stored password hash, and the new one is written only where the old"
            " one is still stored, so that they work once: set the key to the name"
            " of the column that holds it."
        )


def _link_binding(state: _State, user: t.Any) -> str:
    """What a confirmation token of ``user`` is bound to now: the pending
    change request, else the current address."""
    pending = user.pending_email
    if pending is not None:
        return change_digest(pending, user.confirmation_requested_at)
    return address_digest(email_of(user, state.settings.email_attribute))


def _used_by_another(state: _State, user: t.Any, email: str) -> ColumnElement[bool]:
    """``EXISTS``: a row other than ``user``'s holds ``email`` in any
    spelling. The rows are read through a derived table with a ``LIMIT``,
    which MySQL and MariaDB materialise, since they refuse an ``UPDATE``
    whose subquery reads the table being updated."""
    model = state.user_model
    other = aliased(model)
    key_name = sa_inspect(model).get_property_by_column(state.key.column).key
    other_key = getattr(other, key_name)
    column = getattr(other, state.settings.email_attribute)
    rows = (
        select(other_key)
        .where(
            func.lower(column).in_(lookup_keys(email)),
            other_key != state.key.value(primary_key(user)),
        )
        .limit(1)
        .subquery("used_by_another")
    )
    return select(literal(1)).select_from(rows).exists()


def _same_time(column: t.Any, value: t.Any) -> ColumnElement[bool]:
    """``column`` holds ``value`` (``None`` too): the request a link was
    made for is still the one recorded."""
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


def _reset_binding(state: _State, user: t.Any) -> str:
    stored = getattr(user, state.settings.password_hash_attribute, None)
    return reset_digest(
        email_of(user, state.settings.email_attribute),
        None if stored is None else str(stored),
    )
