"""The registrations of ``benchmarks.latency``, run as
``python -m benchmarks.latency_load``.

A process of its own, so that it imports Flask-Confirm from the source tree
being measured (``bench_env``'s ``first_on_path``) and so that its threads
never share an interpreter with the orchestrator or the SMTP sink. It builds
:mod:`benchmarks.app` from ``FLASK_CONFIRM_BENCH_CONFIG``, drops and creates
its tables with that tree's models, answers ``ready {json}`` (where it
imported ``flask_confirm`` from), then takes commands on standard input, one
a line:

``warm N TAG``
    N registrations one after another (users ``TAG-0`` ...), answering
    ``warmed``: the worker's connections and templates warm up on them.
``run RATE DURATION TAG THREADS``
    Registrations on an open-loop schedule: registration ``i`` (user
    ``TAG-i@example.org``) is due at ``t0 + i / RATE`` for ``RATE *
    DURATION`` of them, whatever the earlier ones are doing. A dispatcher
    hands each to a pool of ``THREADS`` client threads when it is due; one
    that finds every thread busy waits in line, and that wait counts as its
    lag. Answers ``done {json}``: ``t0`` (``time.monotonic()``, comparable
    with the sink's timestamps on Linux), the count, the indexes that failed,
    and the lag and call durations.

Each registration is what the README's view does: add the user to the
session and call ``confirm.send_confirmation(user)``, which commits and
queues, in an app context of its own (a request's). End of input stops it.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
import typing as t

import flask_confirm
from benchmarks import app as bench_app
from benchmarks.common import percentile

if t.TYPE_CHECKING:
    from flask import Flask


def register(app: Flask, email: str) -> bool:
    """One registration; False if it raised or could not queue its job."""
    db, user_model, confirm = bench_app.parts(app)
    try:
        with app.app_context():
            user = user_model(email=email)
            db.session.add(user)
            return confirm.send_confirmation(user) is not None
    except Exception:
        traceback.print_exc(file=sys.stderr)
        return False


def open_loop(
    app: Flask, rate: float, duration: float, tag: str, threads: int
) -> dict[str, t.Any]:
    """Issue ``rate * duration`` registrations on schedule; see the module."""
    count = max(1, round(rate * duration))
    due: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    lags = [0.0] * count
    calls = [0.0] * count
    failed: list[int] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.05

    def client() -> None:
        while (i := due.get()) is not None:
            start = time.monotonic()
            lags[i] = start - (t0 + i / rate)
            ok = register(app, f"{tag}-{i}@example.org")
            calls[i] = time.monotonic() - start
            if not ok:
                with lock:
                    failed.append(i)

    pool = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for i in range(count):
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        due.put(i)
    for _ in pool:
        due.put(None)
    for thread in pool:
        thread.join()
    return {
        "t0": t0,
        "count": count,
        "failed": sorted(failed),
        "finished": time.monotonic() - t0,
        "lag_p50_ms": percentile(lags, 50) * 1000,
        "lag_p99_ms": percentile(lags, 99) * 1000,
        "lag_max_ms": max(lags) * 1000,
        "call_p50_ms": percentile(calls, 50) * 1000,
        "call_p99_ms": percentile(calls, 99) * 1000,
    }


def main() -> None:
    app = bench_app.create_app()
    db, _, _ = bench_app.parts(app)
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.remove()
    where = os.path.realpath(flask_confirm.__file__)
    print(f"ready {json.dumps({'flask_confirm': where})}", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "warm":
            count, tag = int(args[0]), args[1]
            for i in range(count):
                register(app, f"{tag}-{i}@example.org")
            print("warmed", flush=True)
        elif command == "run":
            rate, duration = float(args[0]), float(args[1])
            tag, threads = args[2], int(args[3])
            done = open_loop(app, rate, duration, tag, threads)
            print(f"done {json.dumps(done)}", flush=True)
        else:
            print(f"error unknown command {command!r}", flush=True)


if __name__ == "__main__":
    main()
