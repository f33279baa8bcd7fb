"""Ways of handing a rendered message to a mail provider.

A sender is made once per process (per worker, not per job) and reused, so it
can keep a connection or an API client open between messages. Choose one with
:data:`CONFIRM_SENDER`: ``"smtp"``, ``"ses"``, ``"console"``, ``"memory"``, or
the dotted path of your own class implementing :class:`Sender`.
"""

from __future__ import annotations

from ..mail.message import EmailMessage
from .base import ConsoleSender
from .base import MemorySender
from .base import Sender
from .registry import make_sender
from .ses import SESSender
from .smtp import SMTPSender

__all__ = [
    "ConsoleSender",
    "EmailMessage",
    "MemorySender",
    "SESSender",
    "SMTPSender",
    "Sender",
    "make_sender",
]
