"""The :class:`Sender` protocol, and the two senders that need no provider:
:class:`ConsoleSender` for development, :class:`MemorySender` for tests."""

from __future__ import annotations

import sys
import threading
import typing as t

from ..mail.message import EmailMessage

if t.TYPE_CHECKING:
    from flask import Flask


@t.runtime_checkable
class Sender(t.Protocol):
    """What Flask-Confirm needs of a sender.

    A class named in :data:`CONFIRM_SENDER` is called once per process with the
    application (``SenderClass(app)``) and must return an object with these
    methods. :meth:`send` raises on failure: raise
    :class:`.PermanentSendError` for a refusal that retrying cannot change,
    :class:`.TransientSendError` (or anything else) for one worth retrying.
    The worker records the reason on the user and lets RQ retry transient
    failures; :data:`.confirmation_failed` is sent when no retry follows.
    """

    def send(self, message: EmailMessage) -> str | None:
        """Send ``message``; return the provider's message id, if any."""

    def close(self) -> None:
        """Release connections. Called when the worker stops."""


class ConsoleSender:
    """Prints each message to standard output, for development.

    The printed text includes the link, which is the point in development and
    why this sender must not be used in production.
    """

    def __init__(self, app: Flask, stream: t.TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: EmailMessage) -> str | None:
        stream = self._stream or sys.stdout
        rule = "-" * 72
        print(
            f"{rule}\nFrom: {message.sender}\nTo: {message.to}\n"
            f"Subject: {message.subject}\n\n{message.text}\n{rule}",
            file=stream,
            flush=True,
        )
        return None

    def close(self) -> None:
        pass


class MemorySender:
    """Keeps sent messages in :attr:`outbox`, for tests.

    The outbox lives in the process that sends: with :data:`CONFIRM_ASYNC`
    false (the default under ``app.testing``) that is the test process.
    """

    def __init__(self, app: Flask) -> None:
        #: Every message sent, oldest first.
        self.outbox: list[EmailMessage] = []
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> str | None:
        with self._lock:
            self.outbox.append(message)
            return f"memory-{len(self.outbox)}"

    def close(self) -> None:
        pass
