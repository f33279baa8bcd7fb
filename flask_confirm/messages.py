"""A deprecated alias of :mod:`flask_confirm.mail.messages`, where the mails
Flask-Confirm sends are now composed; kept for one release."""

from __future__ import annotations

from .mail.messages import compose
from .mail.messages import DEFAULT_SUBJECTS
from .mail.messages import duration_words
from .mail.messages import validity

__all__ = ["DEFAULT_SUBJECTS", "compose", "duration_words", "validity"]
