"""The app's CLI: ``flask confirm-worker`` (:mod:`.worker`) and the ``flask
confirm`` group (:mod:`.commands`). Internal."""

from __future__ import annotations

from .commands import confirm_group
from .worker import worker_command

__all__ = ["confirm_group", "worker_command"]
