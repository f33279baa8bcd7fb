"""``python -m benchmarks.timed_cli ARGS``: run ``flask --app
benchmarks.app:create_app ARGS`` and print, on standard error, how long each
sweep inside it took (``sweep-seconds S``), so that the ``bulk`` benchmark can
tell the sweep's own time from the process start-up. The sweep is the
service function ``flask_confirm.outbox.bulk.sweep``, which the ``flask
confirm sweep`` command and :meth:`Confirm.sweep` both call.
"""

from __future__ import annotations

import functools
import sys
import time
import typing as t

from flask.cli import main as flask_main

from flask_confirm.outbox import bulk


def _timed(method: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    @functools.wraps(method)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            print(f"sweep-seconds {elapsed:.6f}", file=sys.stderr, flush=True)

    return wrapper


def main() -> None:
    bulk.sweep = _timed(bulk.sweep)
    sys.argv = ["flask", "--app", "benchmarks.app:create_app", *sys.argv[1:]]
    flask_main()


if __name__ == "__main__":
    main()
