"""``python -m example``: the example app and its worker, together.

Creates the tables, starts ``flask --app example.app:create_app confirm-worker``
as a subprocess when Redis answers, and serves the app with Flask's
development server on http://127.0.0.1:5000 (``PORT`` overrides the port).
Ctrl-C or SIGTERM stops both. Configure it with the environment variables
listed in ``example/app.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import typing as t
from pathlib import Path

from flask.helpers import get_debug_flag

from example.app import create_app
from example.app import db
from example.app import DEFAULT_DASHBOARD_PASSWORD
from example.app import DEFAULT_DASHBOARD_USER

if t.TYPE_CHECKING:
    import types

#: The directory that holds the ``example`` package: the worker imports it
#: from there whatever the current directory.
ROOT = Path(__file__).resolve().parent.parent

#: Seconds a stopping worker may take to finish the job in hand.
WORKER_STOP_TIMEOUT = 15


def main() -> int:
    port = int(os.environ.get("PORT") or 5000)
    if not os.environ.get("CONFIRM_EXTERNAL_URL"):
        # Links must lead to this server; the worker inherits the variable.
        os.environ["CONFIRM_EXTERNAL_URL"] = f"http://127.0.0.1:{port}"

    # Stop on SIGTERM (and a closed terminal) the way Ctrl-C stops.
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _interrupt)

    app = create_app()
    with app.app_context():
        db.create_all()
        database = db.engine.url.render_as_string(hide_password=True)
    config = app.config

    base = f"http://127.0.0.1:{port}"
    print(" * Flask-Confirm example")
    print(f" * App:       {base}/")
    if config["CONFIRM_DASHBOARD_URL"]:
        user, password = config["DASHBOARD_USER"], config["DASHBOARD_PASSWORD"]
        if (user, password) == (DEFAULT_DASHBOARD_USER, DEFAULT_DASHBOARD_PASSWORD):
            credentials = f"user {user}, password {password}"
        else:
            credentials = f"user {user}, password from DASHBOARD_PASSWORD"
        print(f" * Dashboard: {base}{config['CONFIRM_DASHBOARD_URL']}/ ({credentials})")
    else:
        print(" * Dashboard: off (no Redis)")
    print(f" * Database:  {database}")
    print(
        f" * Mail:      sender {config['CONFIRM_SENDER']}, links to"
        f" {config['CONFIRM_EXTERNAL_URL']}"
    )

    worker: subprocess.Popen[bytes] | None = None
    stopping = threading.Event()
    try:
        if config["CONFIRM_ASYNC"]:
            worker = start_worker(stopping)
            print(f" * Worker:    started (pid {worker.pid})")
        else:
            print(" * Worker:    not started; mails are sent by the web process")
        print(" * Press Ctrl-C to stop.", flush=True)
        app.run(
            host="127.0.0.1",
            port=port,
            debug=get_debug_flag(),
            use_reloader=False,
            load_dotenv=False,
        )
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        if worker is not None:
            stop_worker(worker)
    print(" * Stopped.", flush=True)
    return 0


def start_worker(stopping: threading.Event) -> subprocess.Popen[bytes]:
    """Start ``flask confirm-worker`` with this process's environment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH")) if p
    )
    env.pop("FLASK_APP", None)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "example.app:create_app",
            "confirm-worker",
            "--with-scheduler",
        ],
        env=env,
        cwd=ROOT,
        # Its own session, so that Ctrl-C reaches only this process, which then
        # stops the worker with exactly one SIGTERM: RQ finishes the job in
        # hand on the first signal but abandons it on a second.
        start_new_session=True,
    )

    def watch() -> None:
        code = worker.wait()
        if not stopping.is_set():
            print(
                f" * The worker exited unexpectedly (code {code}); mails stay"
                " queued in Redis until a worker runs again.",
                file=sys.stderr,
                flush=True,
            )

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()
    return worker


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    print(" * Stopping the worker...", flush=True)
    worker.terminate()
    try:
        worker.wait(WORKER_STOP_TIMEOUT)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        worker.kill()
        worker.wait()


def _interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
