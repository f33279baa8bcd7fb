"""SES events from SNS: ``POST <prefix>/events/ses``, with
:data:`CONFIRM_SES_EVENTS` on.

SNS posts here: a ``SubscriptionConfirmation`` when the subscription is
made (confirmed by visiting its ``SubscribeURL``, for an allowed topic only)
and then a ``Notification`` per SES event. Nothing is believed before
:func:`.sns.verify`; a message refused gets a 4xx with a stable ``error``
code and changes nothing. A repeated ``MessageId`` (SNS delivers at least
once) is applied once. If an event cannot be recorded the answer is a 5xx,
and SNS sends it again. Exempt from CSRF protection (SNS has no token) and
limited per client network by :data:`CONFIRM_SES_EVENT_LIMIT`. Internal.
"""

from __future__ import annotations

import logging
import math
import typing as t
import urllib.request

from flask import current_app
from flask import request
from redis.exceptions import RedisError

from .. import feedback
from .. import sns
from ..ses_events import read as read_event
from ..state import get_state
from .clients import client_ip
from .clients import hit

if t.TYPE_CHECKING:
    from flask import Blueprint
    from flask.typing import ResponseReturnValue

    from ..config import Settings
    from ..state import AppState

logger = logging.getLogger("flask_confirm")

#: The endpoint, for the body limit and the CSRF exemption.
ENDPOINT = "confirm.ses_events"

#: The largest body taken here (SNS's own limit is 256 KiB).
MAX_BODY = sns.MAX_BODY

#: How long a ``MessageId`` is remembered: SNS retries for at most an hour
#: (and a message older than that is refused anyway).
SEEN_FOR = 2 * 3600

#: Seconds a subscription confirmation may take.
SUBSCRIBE_TIMEOUT = 10


def register(bp: Blueprint, settings: Settings) -> None:
    """Add the SES events route to ``bp``."""

    @bp.route("/events/ses", methods=["POST"])
    def ses_events() -> ResponseReturnValue:
        """Take one SNS message (see the module)."""
        state = get_state()
        wait = hit(state, "ses-events-ip", client_ip(), settings.ses_event_limit)
        if wait:
            retry_after = str(math.ceil(wait))
            body = {"error": "rate_limited", "message": "Too many requests."}
            return body, 429, {"Retry-After": retry_after}
        try:
            fields = sns.parse(request.get_data(cache=False))
            assert state.sns_certificates is not None  # on with the key
            message = sns.verify(
                fields,
                topics=settings.ses_event_topics,
                certificates=state.sns_certificates,
            )
        except sns.SNSMessageRefused as e:
            logger.warning("An SNS message was refused: %s (%s).", e.code, e)
            return {"error": e.code, "message": str(e)}, e.status
        return _take(state, message)

    def exempt(app: t.Any) -> None:
        exempt_view = getattr(app.extensions.get("csrf"), "exempt", None)
        if callable(exempt_view):
            exempt_view(ses_events)

    # A CSRFProtect set up before init_app: exempt the view now; one set up
    # after checks after this hook: exempt it before it does.
    bp.record_once(lambda setup: exempt(setup.app))

    @bp.before_app_request
    def exempt_from_csrf() -> None:
        if request.endpoint == ENDPOINT:
            exempt(current_app)


def _take(state: AppState, message: sns.SNSMessage) -> ResponseReturnValue:
    """Apply a verified message once; 5xx when it could not be."""
    key = f"flask-confirm:sns:{message.topic_arn}:{message.message_id}"
    try:
        first = state.redis.set(key, b"1", nx=True, ex=SEEN_FOR)
    except RedisError as e:
        # Unrecorded is better than twice: let SNS send it again.
        logger.warning("SNS message not taken: Redis error %s.", type(e).__name__)
        return {"error": "not_recorded", "message": "Try again later."}, 503
    if not first:
        return {"status": "duplicate"}
    try:
        if message.type == sns.SUBSCRIPTION_CONFIRMATION:
            visit(t.cast(str, message.subscribe_url))
            logger.info("Confirmed the SNS subscription to %s.", message.topic_arn)
        elif message.type == sns.NOTIFICATION:
            feedback.apply(state, read_event(message.message))
        else:
            logger.warning("SNS unsubscribed this endpoint from %s.", message.topic_arn)
    except Exception:
        state.db.session.rollback()
        try:
            state.redis.delete(key)
        except RedisError:
            logger.warning(
                "SNS message %s may be skipped on retry.", message.message_id
            )
        logger.exception("An SNS message could not be recorded; SNS will retry.")
        return {"error": "not_recorded", "message": "Try again later."}, 500
    return {"status": "ok"}


def _visit(url: str) -> None:
    """Visit a ``SubscribeURL`` (checked by :func:`.sns.verify` to be an
    SNS one), which confirms the subscription; raise if it did not."""
    with urllib.request.urlopen(url, timeout=SUBSCRIBE_TIMEOUT) as response:
        response.read(64 * 1024)


#: How a subscription is confirmed (a name, so a test without the network can
#: stand in for AWS's endpoint).
visit = _visit
