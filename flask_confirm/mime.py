"""Where :mod:`flask_confirm.mail.mime` used to be, for the modules that
still import it from here. Internal."""

from __future__ import annotations

from .mail.mime import ascii_address
from .mail.mime import check_recipient
from .mail.mime import OutgoingMail

__all__ = ["OutgoingMail", "ascii_address", "check_recipient"]
