"""Configuration keys, their defaults, and the one place they are read.

Every ``CONFIRM_*`` key is named once, as a constant of :class:`Keys`; the rest
of the package reads the frozen :class:`Settings` built by :func:`load` during
:meth:`.Confirm.init_app`, so a misspelt or missing key fails on start-up with a
message that names it instead of on the first registration.

The key names and defaults are in :mod:`.keys`, :class:`Settings` and
:func:`load` in :mod:`.settings`, the checks of each value in :mod:`.checks`,
:mod:`.urls` (URLs and origins) and :mod:`.smtp` (DKIM, the Return-Path).
Everything is imported from here.
"""

from __future__ import annotations

from .checks import SEND_WINDOW_MARGIN
from .keys import APP_LAYOUT_CONTENT_SECURITY_POLICY
from .keys import DEFAULTS
from .keys import DEVELOPMENT_MAIL_FROM
from .keys import Keys
from .keys import MESSAGE_FIELDS
from .keys import MESSAGE_KINDS
from .keys import SENDER_NAMES
from .settings import load
from .settings import Settings
from .smtp import dkim_key
from .smtp import DKIMKey
from .smtp import return_path
from .urls import DEFAULT_PORTS
from .urls import origin_of

__all__ = [
    "APP_LAYOUT_CONTENT_SECURITY_POLICY",
    "DEFAULTS",
    "DEFAULT_PORTS",
    "DEVELOPMENT_MAIL_FROM",
    "MESSAGE_FIELDS",
    "MESSAGE_KINDS",
    "SENDER_NAMES",
    "SEND_WINDOW_MARGIN",
    "DKIMKey",
    "Keys",
    "Settings",
    "dkim_key",
    "load",
    "origin_of",
    "return_path",
]
