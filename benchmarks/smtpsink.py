"""An SMTP sink for the benchmarks, run as ``python -m benchmarks.smtpsink``.

It accepts every message without parsing it, optionally sleeping ``--delay``
seconds in its DATA handler first (a slow provider), and counts messages,
connections, and the (system-wide monotonic) times of the first and last
message. It also notes each message's arrival, as that time and the first
recipient of its envelope, so that a benchmark can tell how long each user's
mail took (``benchmarks.latency``). Commands arrive on standard input, one a
line: ``stats`` answers ``stats {json}``, ``arrivals`` answers ``arrivals
{json}`` (a list of ``[time, recipient]`` since the last reset), ``reset``
answers ``reset``; end of input stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import typing as t

from aiosmtpd.controller import Controller


class CountingHandler:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.count = 0
            self.connections = 0
            self.first: float | None = None
            self.last: float | None = None
            self.arrivals: list[tuple[float, str]] = []

    def stats(self) -> dict[str, t.Any]:
        with self.lock:
            return {
                "count": self.count,
                "connections": self.connections,
                "first": self.first,
                "last": self.last,
            }

    def arrival_list(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.arrivals)

    async def handle_EHLO(
        self,
        server: t.Any,
        session: t.Any,
        envelope: t.Any,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        now = time.monotonic()
        recipient = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        with self.lock:
            self.arrivals.append((now, recipient))
            self.count += 1
            if self.first is None:
                self.first = now
            self.last = now
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    handler = CountingHandler(args.delay)
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=args.port,
        server_hostname="sink.example.test",
        ready_timeout=10,
    )
    controller.start()
    try:
        print("ready", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(f"stats {json.dumps(handler.stats())}", flush=True)
            elif command == "arrivals":
                print(f"arrivals {json.dumps(handler.arrival_list())}", flush=True)
            elif command == "reset":
                handler.reset()
                print("reset", flush=True)
            else:
                print(f"error unknown command {command!r}", flush=True)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
