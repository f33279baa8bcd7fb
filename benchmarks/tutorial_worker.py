"""The baseline's worker: ``python -m benchmarks.tutorial_worker [--burst]``.

As in the tutorial's ``manage.py run_worker``: the app is built (and the job
module imported) once in the parent, then RQ's forking ``Worker`` runs each job
in a child of it.
"""

from __future__ import annotations

import argparse

from redis import Redis
from rq import Queue
from rq import Worker

from benchmarks import tutorial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--queue", default=tutorial.QUEUE)
    args = parser.parse_args()

    app = tutorial.get_app()
    connection = Redis.from_url(app.config["REDIS_URL"])
    worker = Worker([Queue(args.queue, connection=connection)], connection=connection)
    worker.work(burst=args.burst, logging_level="INFO")


if __name__ == "__main__":
    main()
