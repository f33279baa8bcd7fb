"""Flask-Confirm: email-address confirmation for Flask.

Signed, expiring links mailed from an RQ worker, a page that confirms them,
resend, email change, optional password reset, and a protected monitoring
dashboard.
"""

from __future__ import annotations

from . import signals
from .addresses import InvalidEmail
from .decorators import confirmed_required
from .errors import ConfigError
from .errors import ConfirmError
from .errors import EmailInUse
from .errors import TokenError
from .errors import TokenExpired
from .errors import TokenInvalid
from .extension import Confirm
from .faults import AddressSuppressed
from .faults import PermanentSendError
from .faults import TransientSendError
from .models import ConfirmableDataclassMixin
from .models import ConfirmableMixin
from .senders import EmailMessage
from .senders import Sender

__all__ = [
    "AddressSuppressed",
    "ConfigError",
    "Confirm",
    "ConfirmError",
    "ConfirmableDataclassMixin",
    "ConfirmableMixin",
    "EmailInUse",
    "EmailMessage",
    "InvalidEmail",
    "PermanentSendError",
    "Sender",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TransientSendError",
    "confirmed_required",
    "signals",
]
