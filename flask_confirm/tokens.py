"""Signed, expiring confirmation tokens.

A token signs ``[user_id, address_digest]``. Binding it to a digest of the
address, rather than to the address itself, means a link dies as soon as the
user's address changes, while the URL does not carry the address in readable
form.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t

from itsdangerous import BadData
from itsdangerous import SignatureExpired
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode
from itsdangerous.encoding import base64_encode

from .errors import TokenExpired
from .errors import TokenInvalid
from .models import as_utc
from .models import UserId

#: A token is about 80 characters; anything much longer is not ours, and is
#: rejected before any decoding work is spent on it.
MAX_TOKEN_LENGTH = 512

#: One purpose, one salt: a token made for another purpose (a password reset,
#: a session cookie) never validates as a confirmation token.
SALT = "flask-confirm.email-confirmation"

#: The salt of password-reset tokens.
RESET_SALT = "flask-confirm.password-reset"

#: The salt of the "this wasn't me" links in the notice of an email change.
CANCEL_SALT = "flask-confirm.email-change-cancel"


def address_digest(email: str) -> str:
    """Return a short digest of a normalised address, the binding in a token."""
    normalised = email.strip().lower()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:20]


def reset_digest(email: str, password_hash: str | None) -> str:
    """Return the binding of a password-reset token: the address and the
    stored password hash, so the token dies once the password is set (it is
    single-use) or the address changes."""
    material = f"{email.strip().lower()}\0{password_hash or ''}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:20]


def change_digest(new_email: str, requested_at: dt.datetime | None) -> str:
    """Return the binding of a cancel token: the pending new address and the
    time the change was requested, so that the link in a notice cancels
    that request only, not a later one (to the same address or another)."""
    stamp = "" if requested_at is None else as_utc(requested_at).isoformat()
    material = f"{new_email.strip().lower()}\0{stamp}"
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:20]


class TokenSerializer:
    """Makes and checks confirmation tokens for one application.

    :param secret_keys: the keys to accept, oldest first; tokens are signed with
        the last one. Pass ``[*app.config["SECRET_KEY_FALLBACKS"], app.secret_key]``
        so that rotating the key does not kill links already mailed.
    :param max_age: seconds a token stays valid after it was made.
    :param salt: the token's purpose (:data:`SALT`, :data:`RESET_SALT` or
        :data:`CANCEL_SALT`).
    """

    def __init__(
        self, secret_keys: list[str | bytes], max_age: int, salt: str = SALT
    ) -> None:
        # itsdangerous accepts str and bytes keys mixed; its annotation does not.
        keys = t.cast("list[str]", secret_keys)
        self._serializer = URLSafeTimedSerializer(keys, salt=salt)
        self.max_age = max_age

    def dumps(self, user_id: UserId, email: str) -> str:
        """Make a token for ``user_id`` at ``email``."""
        return self.sign(user_id, address_digest(email))

    def sign(self, user_id: UserId, digest: str) -> str:
        """Make a token for ``user_id`` bound to ``digest`` (an
        :func:`address_digest`, a :func:`reset_digest` or a
        :func:`change_digest`)."""
        return self._serializer.dumps([user_id, digest])

    def loads(self, token: str) -> tuple[UserId, str]:
        """Check ``token`` and return ``(user_id, digest)``.

        The caller must still compare the digest with the user's current state
        (:func:`address_digest`), since only it can load the user.

        :raises TokenExpired: the signature is good but older than ``max_age``.
        :raises TokenInvalid: for every other problem.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("The token is empty or too long.")
        if not _canonical(token):
            raise TokenInvalid("The token is not in the form it was made in.")
        try:
            payload = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired as e:
            raise TokenExpired("The token has expired.") from e
        except BadData as e:
            raise TokenInvalid("The token is not valid.") from e
        if (
            not isinstance(payload, list)
            or len(payload) != 2
            or not isinstance(payload[0], (int, str))
            or isinstance(payload[0], bool)
            or not isinstance(payload[1], str)
        ):
            raise TokenInvalid("The token's payload is not a confirmation.")
        return payload[0], payload[1]


def _canonical(token: str) -> bool:
    """Whether each part of ``token`` is spelled as itsdangerous writes it.

    Its base64 decoding forgives ``=`` padding, unused low bits in the last
    character and non-ASCII characters, so one signature has several
    spellings; only the signed text before the last dot is covered by the
    signature. A link is accepted in the one form it was mailed in, so that
    a token can be compared, logged or kept as used by its text.
    """
    for part in token.split("."):
        if not part:
            continue  # the leading dot of a compressed payload
        try:
            if base64_encode(base64_decode(part)) != part.encode("ascii"):
                return False
        except (BadData, UnicodeEncodeError):
            return False
    return True
