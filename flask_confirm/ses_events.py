"""SES's notifications, read: what happened to which recipient.

SES publishes in two formats, and an app may use either: the identity's own
feedback notifications (a ``notificationType``: ``Bounce``, ``Complaint``,
``Delivery``) and configuration-set event publishing (an ``eventType``, which
adds ``Reject``, ``Rendering Failure``, ``Send``, ``DeliveryDelay`` and the
engagement events). Both carry the same ``bounce``, ``complaint`` and
``delivery`` objects and a ``mail`` object with SES's message id and, for
event publishing, the message's tags (``flask-confirm-kind``). This reads
either into one :class:`SESEvent`; what to do about it is the caller's.
A payload that is not an SES event (someone published a test message to the
topic) reads as kind ``"other"``. Internal.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t

from .mail.message import KIND_TAG

#: The event kinds acted on; anything else is ``"other"``.
KINDS = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "Reject": "reject",
    "Rendering Failure": "rendering_failure",
}

#: The complaint feedback type that is not a complaint: the recipient said
#: the mail is not spam (RFC 5965).
NOT_SPAM = "not-spam"

#: Diagnostics are kept at most this long.
MAX_DIAGNOSTIC = 500


@dataclasses.dataclass(frozen=True)
class Recipient:
    """One recipient an event is about, and what the receiving server said."""

    address: str
    diagnostic: str | None = None


@dataclasses.dataclass(frozen=True)
class SESEvent:
    """One SES notification or event, whatever its format."""

    #: ``bounce``, ``complaint``, ``delivery``, ``reject``,
    #: ``rendering_failure``, or ``other``.
    kind: str
    recipients: tuple[Recipient, ...] = ()
    #: For a bounce: SES's ``bounceType`` is ``Permanent`` (a hard bounce).
    permanent: bool = False
    #: For a bounce, ``bounceType/bounceSubType``; for a complaint, the
    #: ``complaintFeedbackType``; for a reject or rendering failure, SES's
    #: reason.
    detail: str | None = None
    #: SES's id of the message the event is about.
    message_id: str | None = None
    #: The kind of mail, from the ``flask-confirm-kind`` tag (event
    #: publishing only; identity notifications carry no tags).
    mail_kind: str | None = None

    @property
    def is_spam_complaint(self) -> bool:
        """A complaint, other than one that says "not spam"."""
        return self.kind == "complaint" and self.detail != NOT_SPAM


def read(message: str) -> SESEvent:
    """Read the ``Message`` of a verified SNS notification."""
    try:
        payload = json.loads(message)
    except (ValueError, RecursionError):
        return SESEvent("other")
    if not isinstance(payload, dict):
        return SESEvent("other")
    name = payload.get("eventType") or payload.get("notificationType")
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        return SESEvent("other")
    mail = _object(payload.get("mail"))
    message_id = _string(mail.get("messageId"))
    mail_kind = _tag(mail.get("tags"))
    if kind == "bounce":
        bounce = _object(payload.get("bounce"))
        bounce_type = _string(bounce.get("bounceType"))
        sub_type = _string(bounce.get("bounceSubType"))
        return SESEvent(
            kind,
            _recipients(bounce.get("bouncedRecipients"), "diagnosticCode"),
            permanent=bounce_type == "Permanent",
            detail="/".join(p for p in (bounce_type, sub_type) if p) or None,
            message_id=message_id,
            mail_kind=mail_kind,
        )
    if kind == "complaint":
        complaint = _object(payload.get("complaint"))
        return SESEvent(
            kind,
            _recipients(complaint.get("complainedRecipients"), None),
            detail=_string(complaint.get("complaintFeedbackType")),
            message_id=message_id,
            mail_kind=mail_kind,
        )
    if kind == "delivery":
        delivery = _object(payload.get("delivery"))
        addresses = delivery.get("recipients")
        smtp = _string(delivery.get("smtpResponse"))
        recipients = tuple(
            Recipient(a, _clip(smtp))
            for a in (addresses if isinstance(addresses, list) else [])
            if isinstance(a, str) and a
        )
        return SESEvent(kind, recipients, message_id=message_id, mail_kind=mail_kind)
    # A reject or a rendering failure: about the message, not a recipient.
    detail = _object(payload.get("reject")).get("reason") or _object(
        payload.get("failure")
    ).get("errorMessage")
    destination = mail.get("destination")
    recipients = tuple(
        Recipient(a)
        for a in (destination if isinstance(destination, list) else [])
        if isinstance(a, str) and a
    )
    return SESEvent(
        kind,
        recipients,
        detail=_clip(_string(detail)),
        message_id=message_id,
        mail_kind=mail_kind,
    )


def _recipients(value: t.Any, diagnostic_key: str | None) -> tuple[Recipient, ...]:
    found = []
    for entry in value if isinstance(value, list) else []:
        entry = _object(entry)
        address = _string(entry.get("emailAddress"))
        if not address:
            continue
        diagnostic = _string(entry.get(diagnostic_key)) if diagnostic_key else None
        found.append(Recipient(_bare(address), _clip(diagnostic)))
    return tuple(found)


def _bare(address: str) -> str:
    """``Name <a@b>`` as SES sometimes gives it: the address alone."""
    if address.endswith(">") and "<" in address:
        return address[address.rindex("<") + 1 : -1].strip()
    return address.strip()


def _tag(tags: t.Any) -> str | None:
    values = _object(tags).get(KIND_TAG)
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return None


def _object(value: t.Any) -> dict[str, t.Any]:
    return value if isinstance(value, dict) else {}


def _string(value: t.Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_DIAGNOSTIC]
