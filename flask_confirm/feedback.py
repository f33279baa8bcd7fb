"""What a provider's report after sending changes: bounces and complaints.

A hard bounce means the address does not exist: it goes on the suppression
list (``hard_bounce``), and the confirmation or change it was mailed for
fails for good with the receiving server's diagnostic, so the resend form,
``retry-failed`` and sweeps stop mailing it. A complaint (a recipient marking
the mail as spam, "not spam" apart) puts the address on the list too
(``complaint``): one more mail to it is what gets a sender's account
reviewed. A soft bounce (a full mailbox, a server down) changes nothing but
is counted, and signalled. Deliveries, rejects and rendering failures are
logged. The signals :data:`.email_bounced` and :data:`.email_complained` say
what happened, with the user when there is one. Internal.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
import typing as t

from . import signals
from . import stats
from . import store
from . import suppression
from .addresses import canonical_email
from .addresses import lookup_keys
from .models import primary_key
from .models import target_address
from .models import utcnow
from .state import current_app_object

if t.TYPE_CHECKING:
    from .ses_events import SESEvent
    from .state import AppState

logger = logging.getLogger("flask_confirm")

#: The confirmation states in which a link is still on its way or unused.
OWED = ("requested", "sent")


def apply(state: AppState, event: SESEvent, *, source: str = "ses") -> None:
    """Act on ``event``: suppress, fail what is owed, signal, log. Each
    change is committed before its signal is sent.

    :raises Exception: the database could not record it (the caller answers
        so that the provider sends the report again).
    """
    if event.kind == "bounce":
        for recipient in event.recipients:
            if event.permanent:
                suppression.suppress(
                    state,
                    recipient.address,
                    "hard_bounce",
                    source=source,
                    diagnostic=recipient.diagnostic,
                )
            if not event.permanent:
                _count_soft_bounce(
                    state, recipient.address, recipient.diagnostic, source
                )
            users = _fail_owed(state, recipient.address, event, recipient.diagnostic)
            stats.record(state, "bounced", event.mail_kind)
            logger.info(
                "A %s bounce (%s) for user(s) %s.",
                "hard" if event.permanent else "soft",
                event.detail,
                [primary_key(u) for u in users] or "none",
            )
            for user in users or [None]:
                signals.email_bounced.send(
                    current_app_object(),
                    user=user,
                    address=recipient.address,
                    permanent=event.permanent,
                    diagnostic=recipient.diagnostic,
                )
    elif event.kind == "complaint":
        if not event.is_spam_complaint:
            logger.info("A 'not spam' report; nothing changed.")
            return
        for recipient in event.recipients:
            suppression.suppress(
                state,
                recipient.address,
                "complaint",
                source=source,
                diagnostic=event.detail,
            )
            stats.record(state, "complained", event.mail_kind)
            users = store.users_at(state, recipient.address)
            state.db.session.rollback()  # the read's transaction; nothing to keep
            logger.warning(
                "A complaint (%s) for user(s) %s.",
                event.detail,
                [primary_key(u) for u in users] or "none",
            )
            for user in users or [None]:
                signals.email_complained.send(
                    current_app_object(),
                    user=user,
                    address=recipient.address,
                    feedback_type=event.detail,
                )
    elif event.kind == "delivery":
        logger.debug("Delivered (%s mail).", event.mail_kind or "a")
        if DELIVERED_AT in state.user_model.__mapper__.attrs:
            for recipient in event.recipients:
                _record_delivery(state, recipient.address)
    elif event.kind in ("reject", "rendering_failure"):
        logger.error(
            "The provider did not send a %s mail: %s (%s).",
            event.mail_kind or "Flask-Confirm",
            event.kind.replace("_", " "),
            event.detail,
        )


#: Soft bounces within :data:`SOFT_WINDOW` that rest an address for
#: :data:`SOFT_REST`: a mailbox full for weeks is as good as gone for now,
#: and each further mail counts against the sender.
SOFT_BOUNCES = 3
SOFT_WINDOW = dt.timedelta(days=14)
SOFT_REST = dt.timedelta(days=7)


def _count_soft_bounce(
    state: AppState, address: str, diagnostic: str | None, source: str
) -> None:
    """Count a soft bounce of ``address`` (in Redis, for
    :data:`SOFT_WINDOW`); the :data:`SOFT_BOUNCES`-th suppresses it for
    :data:`SOFT_REST` (``soft_bounce``), unless it is suppressed already."""
    key = (
        f"flask-confirm:soft-bounces:{state.settings.queue}:{canonical_email(address)}"
    )
    now = time.time()
    window = SOFT_WINDOW.total_seconds()
    with state.redis.pipeline() as pipe:
        pipe.zremrangebyscore(key, 0, now - window)
        pipe.zadd(key, {f"{now}:{os.urandom(4).hex()}": now})
        pipe.zcard(key)
        pipe.expire(key, int(window))
        count = pipe.execute()[2]
    if count >= SOFT_BOUNCES and not suppression.is_suppressed(state, address):
        suppression.suppress(
            state,
            address,
            "soft_bounce",
            source=source,
            diagnostic=diagnostic,
            expires_in=SOFT_REST,
        )


#: The optional column a user model may map to keep when its confirmation
#: mail was last delivered (an SES ``Delivery`` event).
DELIVERED_AT = "confirmation_delivered_at"


def _record_delivery(state: AppState, address: str) -> None:
    """Stamp :data:`DELIVERED_AT` on the users whose sent confirmation went
    to ``address``, and commit."""
    keys = set(lookup_keys(address))
    attribute = state.settings.email_attribute
    for user in store.users_at(state, address):
        owed_to = target_address(user, attribute)
        if user.confirmation_state == "sent" and owed_to.lower() in keys:
            setattr(user, DELIVERED_AT, utcnow())
    state.db.session.commit()


def _fail_owed(
    state: AppState, address: str, event: SESEvent, diagnostic: str | None
) -> list[t.Any]:
    """The users at ``address``; for a hard bounce, a confirmation or
    change still owed *to that address* is marked failed for good (not one
    owed to another: the notice to the old address of a change may bounce
    while the new one is fine), and committed."""
    users = store.users_at(state, address)
    if event.permanent:
        keys = set(lookup_keys(address))
        reason = f"bounced: {diagnostic or event.detail or 'hard bounce'}"
        attribute = state.settings.email_attribute
        for user in users:
            owed_to = target_address(user, attribute)
            if user.confirmation_state in OWED and owed_to.lower() in keys:
                store.record_failure(state, user, reason)
    state.db.session.commit()
    return users
