"""Which sender :data:`CONFIRM_SENDER` names: a built-in one or the dotted
path of an app's own class."""

from __future__ import annotations

import importlib
import typing as t

from ..config import Keys
from ..errors import ConfigError
from .base import ConsoleSender
from .base import MemorySender
from .base import Sender
from .ses import SESSender
from .smtp import SMTPSender

if t.TYPE_CHECKING:
    from flask import Flask

    from ..config import Settings


_BUILTIN: dict[str, type[t.Any]] = {
    "smtp": SMTPSender,
    "ses": SESSender,
    "console": ConsoleSender,
    "memory": MemorySender,
}


def make_sender(app: Flask, settings: Settings) -> Sender:
    """Make the sender named by :data:`CONFIRM_SENDER`. Internal.

    :raises ConfigError: the name or path does not lead to a usable class.
    """
    name = settings.sender
    cls = _BUILTIN.get(name) or _import_class(name)
    try:
        sender = cls(app)
    except ConfigError:
        raise
    except TypeError as e:
        raise ConfigError(
            f"{Keys.SENDER} = {name!r}: the class must accept the app as its only"
            f" argument ({e})."
        ) from e
    if not isinstance(sender, Sender):
        raise ConfigError(
            f"{Keys.SENDER} = {name!r} does not implement the Sender protocol: it"
            " needs send(message) and close() methods."
        )
    return sender


def _import_class(path: str) -> type[t.Any]:
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(
            f"{Keys.SENDER} = {path!r} cannot be imported ({e}). Use one of"
            " 'smtp', 'ses', 'console', 'memory', or 'package.module.ClassName'."
        ) from e
    if not isinstance(cls, type):
        raise ConfigError(f"{Keys.SENDER} = {path!r} is not a class.")
    return cls
