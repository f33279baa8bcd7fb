"""The :class:`Confirm` extension and its per-application state."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hmac
import logging
import typing as t
import uuid
import weakref
from urllib.parse import urlsplit

from flask import current_app
from flask import render_template
from redis import Redis
from redis.exceptions import LockError
from redis.exceptions import RedisError
from rq import Queue
from rq import Retry
from sqlalchemy import func
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from . import signals
from .config import load
from .config import Settings
from .errors import ConfigError
from .errors import TokenInvalid
from .limits import RateLimiter
from .models import as_utc
from .models import state_filters
from .models import utcnow
from .senders import EmailMessage
from .senders import make_sender
from .tasks import make_job_class
from .tasks import send_batch_job
from .tasks import send_confirmation_job
from .tokens import address_digest
from .tokens import TokenSerializer

if t.TYPE_CHECKING:
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from rq.job import Job

    from .models import ConfirmableMixin
    from .senders import Sender
    from .tokens import UserId

logger = logging.getLogger("flask_confirm")

DashboardAuth = t.Callable[[], bool]
_DashboardAuthT = t.TypeVar("_DashboardAuthT", bound=DashboardAuth)
UserLoader = t.Callable[[], t.Any]
_UserLoaderT = t.TypeVar("_UserLoaderT", bound=UserLoader)


@dataclasses.dataclass
class _State:
    """What :class:`Confirm` keeps for one application. Internal."""

    settings: Settings
    db: SQLAlchemy
    user_model: type[t.Any]
    serializer: TokenSerializer
    sender: Sender
    redis: Redis
    queue: Queue
    job_class: type[Job]
    limiter: RateLimiter


class Confirm:
    """Email-address confirmation for a Flask application.

    .. code-block:: python

        confirm = Confirm()
        confirm.init_app(app, db=db, user_model=User)

        # in the registration view, after committing the new user:
        confirm.send_confirmation(user)

    One instance may serve several applications; everything that belongs to an
    application is kept per application, not on the instance.

    :param app: call :meth:`init_app` with it straight away.
    :param db: the Flask-SQLAlchemy extension that holds ``user_model``.
    :param user_model: the user model, a :class:`.ConfirmableMixin` subclass.
    :param dashboard_auth: a callable that returns true to let the current
        request see the RQ dashboard; see :meth:`dashboard_auth`.
    :param user_loader: a callable that returns the signed-in user or
        ``None``, for :func:`.confirmed_required`; see :meth:`user_loader`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        user_model: type[ConfirmableMixin] | None = None,
        dashboard_auth: DashboardAuth | None = None,
        user_loader: UserLoader | None = None,
    ) -> None:
        self._db = db
        self._user_loader: UserLoader | None = user_loader
        self._user_model = user_model
        self._dashboard_auth: DashboardAuth | None = dashboard_auth
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
        user_model: type[ConfirmableMixin] | None = None,
    ) -> None:
        """Set up confirmation for ``app``.

        Reads and checks the ``CONFIRM_*`` configuration, registers the
        ``confirm`` blueprint, the ``flask confirm-worker`` command and, unless
        :data:`CONFIRM_DASHBOARD_URL` is ``None``, the protected RQ dashboard.

        :param db: overrides the ``db`` given to the constructor.
        :param user_model: overrides the ``user_model`` given to the constructor.
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
        secret_keys: list[str | bytes] = [
            *(app.config.get("SECRET_KEY_FALLBACKS") or ()),
            t.cast("str | bytes", app.secret_key),
        ]
        # Bounded timeouts: a Redis that is down or hangs must cost a request
        # seconds at most, not the whole request.
        redis = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2,
            socket_timeout=5,
            health_check_interval=30,
        )
        job_class = make_job_class(app)
        state = _State(
            settings=settings,
            db=db,
            user_model=user_model,
            serializer=TokenSerializer(secret_keys, settings.token_max_age),
            sender=make_sender(app, settings),
            redis=redis,
            queue=Queue(settings.queue, connection=redis, job_class=job_class),
            job_class=job_class,
            # Keyed per purpose from the secret key, so every instance of the
            # app shares the limits and nobody else can compute the keys.
            limiter=RateLimiter(
                redis,
                hmac.new(
                    _as_bytes(secret_keys[-1]), b"flask-confirm.limits", "sha256"
                ).digest(),
            ),
        )
        self._states[app] = state
        app.extensions["confirm"] = self

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

    def current_user(self) -> t.Any:
        """The signed-in user, or ``None``: from :meth:`user_loader`, or from
        Flask-Login's ``current_user`` when the app uses Flask-Login.

        :raises RuntimeError: neither is available.
        """
        if self._user_loader is not None:
            return self._user_loader()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if getattr(app, "login_manager", None) is not None:
            from flask_login import current_user

            user = current_user._get_current_object()
            return user if user.is_authenticated else None
        raise RuntimeError(
            "confirmed_required needs to know who is signed in: set up"
            " Flask-Login, or register a loader with @confirm.user_loader."
        )

    def send_confirmation(self, user: ConfirmableMixin) -> str | None:
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
        state = self._get_state()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        user.confirmation_requested_at = utcnow()
        state.db.session.add(user)
        state.db.session.commit()
        user_id = _primary_key(state, user)

        job_id: str | None
        if state.settings.is_async:
            try:
                job_id = self._enqueue(state, [user_id])[0]
            except RedisError as e:
                logger.warning(
                    "Could not queue the confirmation for user %r (%s: %s); the"
                    " request is recorded and the sweeper will queue it again.",
                    user_id,
                    type(e).__name__,
                    e,
                )
                job_id = None
        else:
            job_id = f"inline-{uuid.uuid4().hex}"
            try:
                with app.app_context():
                    send_confirmation_job(user_id)
            except Exception:
                logger.exception("Inline confirmation for user %r failed.", user_id)
        signals.confirmation_requested.send(app, user=user, job_id=job_id)
        return job_id

    def send_many(
        self, users: t.Iterable[ConfirmableMixin], *, batch_size: int | None = None
    ) -> int:
        """Ask for confirmations for many users at once (a migration, a
        re-send to everyone unconfirmed): one commit, then jobs of
        ``batch_size`` users each (default :data:`CONFIRM_BATCH_SIZE`), queued
        in pipelined round trips. Each batch job sends over one connection, with
        the same per-user state, locking and retry rules as single sends.

        :return: how many confirmations were requested.
        """
        state = self._get_state()
        users = list(users)
        now = utcnow()
        for user in users:
            user.confirmation_requested_at = now
            state.db.session.add(user)
        state.db.session.commit()
        user_ids = [_primary_key(state, user) for user in users]
        self._enqueue(state, user_ids, batch_size)
        return len(user_ids)

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
        state = self._get_state()
        model = state.user_model
        session = state.db.session
        key_column = sa_inspect(model).primary_key[0]
        query = select(key_column).where(model.email_confirmed_at.is_(None))
        if older_than is not None:
            cutoff = utcnow() - dt.timedelta(seconds=older_than)
            query = query.where(
                (model.confirmation_requested_at.is_(None))
                | (model.confirmation_requested_at <= cutoff)
            )
        user_ids = list(session.scalars(query.order_by(key_column)))
        session.rollback()
        self._request_again(state, user_ids, chunk_size, progress)
        return len(user_ids)

    def _request_again(
        self,
        state: _State,
        user_ids: list[UserId],
        chunk_size: int = 1000,
        progress: t.Callable[[int, int], None] | None = None,
    ) -> None:
        """Record a new request for ``user_ids`` and queue their batch jobs:
        one ``UPDATE`` and commit per chunk, each committed before its jobs
        are queued. Internal."""
        model = state.user_model
        key_column = sa_inspect(model).primary_key[0]
        for start in range(0, len(user_ids), chunk_size):
            chunk = user_ids[start : start + chunk_size]
            state.db.session.execute(
                update(model)
                .where(key_column.in_(chunk))
                .values(confirmation_requested_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            state.db.session.commit()
            self._enqueue(state, chunk, batch_size=None)
            if progress is not None:
                progress(len(chunk), len(user_ids))

    def _enqueue(
        self,
        state: _State,
        user_ids: t.Sequence[UserId],
        batch_size: int | None = 1,
    ) -> list[str]:
        """Queue send jobs for ``user_ids``: one per user (``batch_size`` 1) or
        one per batch, pipelined 1,000 jobs per round trip. Internal."""
        settings = state.settings
        size = batch_size or settings.batch_size
        retry = (
            Retry(max=settings.retries, interval=list(settings.retry_intervals))
            if settings.retries
            else None
        )
        job_ids: list[str] = []
        chunks = [user_ids[i : i + size] for i in range(0, len(user_ids), size)]
        for first in range(0, len(chunks), 1000):
            with state.redis.pipeline() as pipe:
                for chunk in chunks[first : first + 1000]:
                    func: t.Callable[..., t.Any]
                    args: tuple[t.Any, ...]
                    if size == 1:
                        func, args = send_confirmation_job, (chunk[0],)
                        description = f"confirmation for user {chunk[0]!r}"
                        timeout = settings.job_timeout
                    else:
                        func, args = send_batch_job, (list(chunk),)
                        description = f"confirmations for {len(chunk)} users"
                        timeout = settings.job_timeout * len(chunk)
                    job = state.queue.enqueue_call(
                        func,
                        args=args,
                        description=description,
                        timeout=timeout,
                        retry=retry,
                        pipeline=pipe,
                    )
                    job_ids.append(job.id)
                pipe.execute()
        return job_ids

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
        state = self._get_state()
        settings = state.settings
        if older_than is None:
            older_than = settings.sweep_after
        lock = state.redis.lock(
            f"flask-confirm:sweep:{settings.queue}",
            timeout=max(hold_lock, 300),
            blocking=False,
        )
        if not lock.acquire():
            return 0
        try:
            model = state.user_model
            cutoff = utcnow() - dt.timedelta(seconds=older_than)
            query = (
                select(sa_inspect(model).primary_key[0])
                .where(state_filters(model)["requested"])
                .where(model.confirmation_requested_at <= cutoff)
            )
            user_ids = list(state.db.session.scalars(query))
            state.db.session.rollback()
            self._enqueue(state, user_ids, batch_size=None)
            if user_ids:
                logger.info("Sweep queued %d pending confirmation(s).", len(user_ids))
            return len(user_ids)
        finally:
            with contextlib.suppress(LockError):
                if hold_lock:
                    lock.extend(hold_lock, replace_ttl=True)
                else:
                    lock.release()

    def status(self) -> dict[str, t.Any]:
        """Count users by :attr:`~.ConfirmableMixin.confirmation_state`.

        :return: ``{"requested": n, "sent": n, "failed": n, "confirmed": n,
            "oldest_pending": timedelta | None}``, where ``oldest_pending`` is
            the age of the oldest request not yet accepted by the provider.
        """
        state = self._get_state()
        model = state.user_model
        session = state.db.session
        filters = state_filters(model)
        counts: dict[str, t.Any] = {
            name: session.scalar(select(func.count()).select_from(model).where(cond))
            for name, cond in filters.items()
        }
        oldest = session.scalar(
            select(func.min(model.confirmation_requested_at)).where(
                filters["requested"]
            )
        )
        counts["oldest_pending"] = utcnow() - as_utc(oldest) if oldest else None
        session.rollback()
        return counts

    def failed(self, limit: int | None = None) -> list[t.Any]:
        """The users whose confirmation failed for good, most recent first;
        ``confirmation_error`` says why."""
        state = self._get_state()
        model = state.user_model
        query = (
            select(model)
            .where(state_filters(model)["failed"])
            .order_by(model.confirmation_failed_at.desc())
            .limit(limit)
        )
        return list(state.db.session.scalars(query))

    def retry_failed(self) -> int:
        """Request again every confirmation that failed for good (after the
        cause is fixed, say), and queue them.

        :return: how many were queued again.
        """
        state = self._get_state()
        model = state.user_model
        query = select(sa_inspect(model).primary_key[0]).where(
            state_filters(model)["failed"]
        )
        user_ids = list(state.db.session.scalars(query))
        state.db.session.rollback()
        self._request_again(state, user_ids)
        return len(user_ids)

    def make_token(self, user: ConfirmableMixin) -> str:
        """Return a new confirmation token for ``user``'s current address."""
        state = self._get_state()
        return state.serializer.dumps(_primary_key(state, user), _email(user))

    def load_user(self, token: str) -> t.Any:
        """Return the user a token was made for.

        :raises TokenExpired: the token is older than :data:`CONFIRM_TOKEN_MAX_AGE`.
        :raises TokenInvalid: the token is bad, its user is gone, or the user's
            address has changed since it was made.
        """
        state = self._get_state()
        user_id, digest = state.serializer.loads(token)
        try:
            user = state.db.session.get(state.user_model, user_id)
        except (SQLAlchemyError, OverflowError, ValueError, TypeError) as e:
            # A signed id the primary key's type cannot hold (a token of a
            # different app sharing the key, say) is as good as no user.
            state.db.session.rollback()
            raise TokenInvalid("The token's user id cannot be looked up.") from e
        email = getattr(user, "email", None)
        if not isinstance(email, str) or not email or address_digest(email) != digest:
            raise TokenInvalid("The token's user or address is no longer current.")
        return user

    def confirm_url(self, user: ConfirmableMixin) -> str:
        """Return a fresh confirmation link for ``user``.

        The link is built on :data:`CONFIRM_EXTERNAL_URL`, never on the current
        request, so a forged ``Host`` header cannot change what is mailed.
        """
        state = self._get_state()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        base = urlsplit(state.settings.external_url)
        adapter = app.url_map.bind(
            base.netloc, script_name=base.path or "/", url_scheme=base.scheme
        )
        return adapter.build(  # type: ignore[no-any-return]
            "confirm.confirm_email",
            {"token": self.make_token(user)},
            force_external=True,
        )

    def render_message(self, user: ConfirmableMixin) -> EmailMessage:
        """Render the confirmation mail for ``user`` from the templates
        ``flask_confirm/email.txt`` and ``flask_confirm/email.html``, which the
        app can override in its own templates folder."""
        settings = self._get_state().settings
        context = {
            "user": user,
            "confirm_url": self.confirm_url(user),
            "expires_in": dt.timedelta(seconds=settings.token_max_age),
            "expires_in_words": _duration_words(settings.token_max_age),
        }
        return EmailMessage(
            to=_email(user),
            sender=settings.mail_from,
            subject=settings.subject,
            text=render_template("flask_confirm/email.txt", **context),
            html=render_template("flask_confirm/email.html", **context),
        )

    def confirm_user(self, user: ConfirmableMixin) -> bool:
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
        key_column = sa_inspect(model).primary_key[0]
        result = state.db.session.execute(
            update(model)
            .where(
                key_column == _primary_key(state, user),
                model.email == _email(user),
                model.email_confirmed_at.is_(None),
            )
            .values(email_confirmed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        state.db.session.commit()  # expires ``user``: it reloads what was stored
        if getattr(result, "rowcount", 0) != 1:
            return False
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        signals.email_confirmed.send(app, user=user)
        return True

    def find_user(self, email: str) -> t.Any:
        """Return the user with address ``email`` (compared without regard to
        case or surrounding space), or ``None``."""
        state = self._get_state()
        model = state.user_model
        # Lowered by the database on both sides: SQLite's lower() folds ASCII
        # only, and must fold the typed address the same way as the stored one.
        query = select(model).where(
            func.lower(model.email) == func.lower(email.strip())
        )
        return state.db.session.scalars(query.limit(1)).first()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _duration_words(seconds: int) -> str:
    """``86400`` -> ``"24 hours"``: the largest unit that divides evenly, so the
    mail never rounds a validity period up."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and (unit != "day" or seconds > 86400):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _check_user_model(model: type[t.Any]) -> None:
    from .models import ConfirmableMixin

    if not (isinstance(model, type) and issubclass(model, ConfirmableMixin)):
        raise ConfigError(
            f"user_model={model!r} must be a model class that inherits from"
            " flask_confirm.ConfirmableMixin."
        )
    if not hasattr(model, "email"):
        raise ConfigError(
            f"user_model={model.__name__} has no 'email' attribute; the address"
            " to confirm must be in a column named 'email'."
        )


def _primary_key(state: _State, user: t.Any) -> t.Any:
    identity = sa_inspect(user).identity
    if identity is None:
        raise ValueError(
            "The user has no primary key yet: add and commit it before calling"
            " send_confirmation()."
        )
    if len(identity) != 1 or not isinstance(identity[0], (int, str)):
        raise ValueError(
            "The user's primary key must be a single int or str column, since"
            " it is what jobs and tokens carry."
        )
    return identity[0]


def _email(user: t.Any) -> str:
    email = user.email
    if not isinstance(email, str) or not email:
        raise ValueError("The user has no email address.")
    return email
