"""What the benchmarks share: result rows, statistics, and the local services
they start (redis-server, a PostgreSQL database, SMTP sinks, moto's SES,
waitress, worker subprocesses) together with the HTTP load generator.

Every service listens on 127.0.0.1 only, every wait is bounded, and every
process and database is stopped or dropped by the context manager that made
it, also when a benchmark fails.
"""

from __future__ import annotations

import collections.abc as cabc
import contextlib
import dataclasses
import http.client
import json
import logging
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import typing as t
import uuid
from pathlib import Path

import redis
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent

#: Environment variable carrying the JSON configuration of the benchmark apps
#: (``benchmarks.app`` and ``benchmarks.tutorial``) into their subprocesses.
CONFIG_ENV = "FLASK_CONFIRM_BENCH_CONFIG"

#: The PostgreSQL server; each benchmark makes a database of its own on it.
POSTGRES_URL = (
    os.environ.get("FLASK_CONFIRM_BENCH_POSTGRES")
    or os.environ.get("FLASK_CONFIRM_TEST_POSTGRES")
    or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

SES_REGION = "us-east-1"
MAIL_FROM = "no-reply@example.test"

FLASK_APP = [sys.executable, "-m", "flask", "--app", "benchmarks.app:create_app"]


def log(message: str) -> None:
    """Progress, on standard error so that standard output is only the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- Results ------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of the results table: a metric of one variant over K runs,
    next to the same metric of its baseline measured in the same run."""

    benchmark: str
    variant: str
    metric: str
    values: list[float]
    baseline: str = ""
    baseline_values: list[float] = dataclasses.field(default_factory=list)
    #: Print every run's value under the table, in order (a paired ratio's
    #: rounds), not only their median and spread.
    per_run: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def baseline_median(self) -> float | None:
        if not self.baseline_values:
            return None
        return statistics.median(self.baseline_values)

    @property
    def ratio(self) -> float | None:
        base = self.baseline_median
        if base is None or base == 0:
            return None
        return self.median / base


class Results:
    """Collects measurements by (variant, metric), one value per run, and
    turns them into rows paired with a baseline variant."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self._data: dict[tuple[str, str], list[float]] = {}

    def add(self, variant: str, metric: str, value: float) -> None:
        self._data.setdefault((variant, metric), []).append(value)

    def values(self, variant: str, metric: str) -> list[float]:
        return self._data.get((variant, metric), [])

    def rows(self, baselines: t.Mapping[str, str] | None = None) -> list[Row]:
        """One row per (variant, metric) in the order they were first added;
        ``baselines`` maps a variant to the variant it is compared with."""
        baselines = baselines or {}
        rows = []
        for (variant, metric), values in self._data.items():
            base = baselines.get(variant, "")
            base_values = self._data.get((base, metric), []) if base else []
            rows.append(
                Row(
                    self.benchmark,
                    variant,
                    metric,
                    list(values),
                    base if base_values else "",
                    list(base_values),
                )
            )
        return rows


def percentile(values: t.Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- Small helpers ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: t.Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"Timed out after {timeout}s waiting for {what}.")


def bench_env(
    config: t.Mapping[str, t.Any], *, first_on_path: Path | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a subprocess running one of the benchmark apps;
    ``first_on_path`` goes before the checkout on ``PYTHONPATH`` (see
    :func:`source_tree_path`)."""
    path = [str(first_on_path)] if first_on_path is not None else []
    env = {
        **os.environ,
        CONFIG_ENV: json.dumps(dict(config)),
        "PYTHONPATH": os.pathsep.join(
            p for p in [*path, str(ROOT), os.environ.get("PYTHONPATH", "")] if p
        ),
        **extra,
    }
    env.pop("FLASK_APP", None)
    return env


def source_tree_path(tree: Path, workdir: Path) -> Path:
    """A directory holding only a link to ``tree``'s ``flask_confirm``
    package, to put first on a subprocess's ``PYTHONPATH`` (``bench_env``'s
    ``first_on_path``): that process then runs Flask-Confirm from ``tree``
    (another worktree, main before a change) while ``benchmarks`` still
    comes from this checkout, whatever ``tree`` holds of it.

    The subprocess must not run in this checkout (``cwd=ROOT``): ``python
    -m`` and ``-c``, and ``flask --app benchmarks.app`` again, put their
    working directory first on ``sys.path``, and this checkout's
    ``flask_confirm`` would come first. Give them ``cwd=workdir``, as this
    check does.

    :raises RuntimeError: ``tree`` has no ``flask_confirm`` package, or a
        Python started so does not import it from there.
    """
    package = (tree / "flask_confirm").resolve()
    if not (package / "__init__.py").is_file():
        raise RuntimeError(f"{tree} holds no flask_confirm package.")
    shim = workdir / f"tree-{uuid.uuid4().hex[:8]}"
    shim.mkdir()
    (shim / "flask_confirm").symlink_to(package, target_is_directory=True)
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, flask_confirm, benchmarks;"
            " print(os.path.realpath(flask_confirm.__file__));"
            " print(os.path.realpath(benchmarks.__file__))",
        ],
        env=bench_env({}, first_on_path=shim),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = found.stdout.split()
    if (
        found.returncode != 0
        or len(lines) != 2
        or Path(lines[0]).parent != package
        or Path(lines[1]).parent != ROOT / "benchmarks"
    ):
        raise RuntimeError(
            f"A Python with {shim} first on PYTHONPATH does not import"
            f" flask_confirm from {package} and benchmarks from this checkout:"
            f" {found.stdout.strip()} {found.stderr.strip()[-1000:]}"
        )
    return shim


def proc_status_kib(pid: int, field: str = "VmRSS") -> int | None:
    """A memory field of ``/proc/<pid>/status`` in KiB (``VmRSS``, the resident
    set now; ``VmHWM``, its peak), None once the process is gone."""
    prefix = f"{field}:"
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(prefix):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@dataclasses.dataclass
class Exited:
    returncode: int
    wall: float
    #: Peak RSS (``VmHWM``) of the process itself, in KiB, as last sampled
    #: before it exited (every 20 ms). Not ``wait4``'s ``ru_maxrss``, which
    #: on Linux includes the RSS of the parent image the child was forked from.
    peak_rss_kib: int
    #: CPU seconds (user + system) of the process and of the children it
    #: waited for (a forking worker's job processes), from ``wait4``.
    cpu: float


class Child:
    """A subprocess whose output goes to a log file. :meth:`wait` samples its
    peak RSS until it exits; :meth:`stop` ends it (by its own pid)."""

    def __init__(
        self,
        args: t.Sequence[str],
        env: t.Mapping[str, str],
        log_path: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.args, self.log_path = list(args), log_path
        with log_path.open("w") as out:  # the child keeps its own descriptor
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.args,
                env=dict(env),
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.pid = self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, timeout: float) -> Exited:
        """Wait for the child to exit by itself; kill it after ``timeout``.

        :raises RuntimeError: it timed out or exited non-zero (with its log).
        """
        deadline = self.started + timeout
        peak, next_sample = 0, 0.0
        while True:
            now = time.perf_counter()
            if now >= next_sample:
                peak = max(peak, proc_status_kib(self.pid, "VmHWM") or 0)
                next_sample = now + 0.02
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                wall = time.perf_counter() - self.started
                code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = code  # reaped here, not by Popen
                if code != 0:
                    raise RuntimeError(
                        f"{' '.join(self.args[-3:])} exited with {code}:\n"
                        + self.log_tail()
                    )
                return Exited(code, wall, peak, usage.ru_utime + usage.ru_stime)
            if now > deadline:
                self.stop()
                raise RuntimeError(
                    f"{' '.join(self.args[-3:])} still running after {timeout}s:\n"
                    + self.log_tail()
                )
            time.sleep(0.005)

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; idempotent."""
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class CPUMeter:
    """Share of the machine's CPU time that was busy (not idle or waiting
    for I/O) between :meth:`start` and :meth:`busy_percent`, from
    ``/proc/stat``."""

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def start(self) -> None:
        self._start = self._read()

    def busy_percent(self) -> float:
        total, idle = self._read()
        total -= self._start[0]
        idle -= self._start[1]
        return 100.0 * (total - idle) / max(total, 1)


# -- Redis --------------------------------------------------------------------


@dataclasses.dataclass
class RedisServer:
    url: str
    client: redis.Redis

    def flush(self) -> None:
        self.client.flushall()

    def version(self) -> str:
        return str(self.client.info("server")["redis_version"])


@contextlib.contextmanager
def redis_server(workdir: Path) -> cabc.Iterator[RedisServer]:
    """A private redis-server on a free port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on the PATH; the benchmarks need it.")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(ready, 10, f"redis-server on port {port}")
        yield RedisServer(url, client)
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- PostgreSQL -----------------------------------------------------------------


@contextlib.contextmanager
def postgres_database() -> cabc.Iterator[str]:
    """A database of this run's own on the local PostgreSQL server, dropped
    afterwards; yields its SQLAlchemy URL."""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"flask_confirm_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        raise RuntimeError(
            f"PostgreSQL is not reachable at {POSTGRES_URL}; start it or set"
            " FLASK_CONFIRM_BENCH_POSTGRES to a server where databases can be made."
        ) from e
    try:
        yield (
            sa.make_url(POSTGRES_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_version() -> str:
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            return str(conn.scalar(sa.text("SHOW server_version")))
    finally:
        engine.dispose()


# -- SMTP sink ------------------------------------------------------------------


@dataclasses.dataclass
class SinkStats:
    #: Messages accepted since the last reset.
    count: int
    #: SMTP connections (EHLO/HELO) since the last reset.
    connections: int
    #: ``time.monotonic()`` (system-wide) of the first and last message.
    first: float | None
    last: float | None

    def rate(self) -> float:
        """Messages per second from the first to the last one received."""
        if self.count < 2 or self.first is None or self.last is None:
            raise RuntimeError(f"Too few mails received to time ({self.count}).")
        return (self.count - 1) / max(self.last - self.first, 1e-9)


class SMTPSink:
    """An aiosmtpd sink in a subprocess of its own (``benchmarks.smtpsink``),
    so that its work competes with the processes measured as a real provider's
    would not, but never with the load generator's threads. ``delay`` seconds
    are slept in its DATA handler, like a slow provider."""

    def __init__(self, workdir: Path, delay: float = 0.0) -> None:
        self.port = free_port()
        self.delay = delay
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr = (workdir / f"smtpsink-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.smtpsink",
                "--port",
                str(self.port),
                "--delay",
                str(delay),
            ],
            cwd=ROOT,
            env=bench_env({}),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self._expect("ready", 20)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())

    def _expect(self, prefix: str, timeout: float = 10) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"SMTP sink on port {self.port} did not answer {prefix!r}."
            ) from None
        if not line.startswith(prefix):
            raise RuntimeError(f"SMTP sink answered {line!r}, not {prefix!r}.")
        return line[len(prefix) :].strip()

    def _command(self, command: str, answer: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._expect(answer)

    def stats(self) -> SinkStats:
        data = json.loads(self._command("stats", "stats"))
        return SinkStats(**data)

    def arrivals(self) -> list[tuple[float, str]]:
        """``(time.monotonic(), first recipient)`` of every message since the
        last reset, in the order they arrived."""
        return [
            (float(when), str(rcpt))
            for when, rcpt in json.loads(self._command("arrivals", "arrivals"))
        ]

    def reset(self) -> None:
        self._command("reset", "reset")

    def config(self) -> dict[str, t.Any]:
        """Flask-Mail keys for sending to this sink."""
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": self.port}

    def stop(self) -> None:
        stop_piped(self.proc, self._reader, self._stderr)


def stop_piped(
    proc: subprocess.Popen[t.Any], reader: threading.Thread, stderr: t.IO[t.Any]
) -> None:
    """Stop a child driven over its stdin (closing it asks it to exit),
    killing it if it takes over 10 s, then join the thread reading its stdout
    and close its pipes and its stderr log."""
    if proc.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    reader.join(5)
    if proc.stdout is not None:
        proc.stdout.close()
    stderr.close()


@contextlib.contextmanager
def smtp_sink(workdir: Path, delay: float = 0.0) -> cabc.Iterator[SMTPSink]:
    sink = SMTPSink(workdir, delay)
    try:
        yield sink
    finally:
        sink.stop()


# -- SES (moto) -------------------------------------------------------------------


class MotoSES:
    """moto's server mode in a thread of this process, with the identity
    ``example.test`` verified. Sent messages are read from moto's backend, and
    :meth:`watch` samples their count to time the first and the last."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request moto serves; keep standard error readable.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self._server.start()

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "bench-key-id",
            "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
            "AWS_DEFAULT_REGION": SES_REGION,
        }

    def reset(self) -> None:
        """Forget every message and identity, then verify ``example.test``."""
        import urllib.request

        import boto3

        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        env = self.env
        session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=SES_REGION,
        )
        # Flask-Confirm sends with SES v2, the tutorial with v1: verify both.
        v2 = session.client("sesv2", endpoint_url=self.endpoint)
        v2.create_email_identity(EmailIdentity="example.test")
        v2.close()
        v1 = session.client("ses", endpoint_url=self.endpoint)
        v1.verify_domain_identity(Domain="example.test")
        v1.close()

    def sent_count(self) -> int:
        from moto.core import DEFAULT_ACCOUNT_ID  # type: ignore[attr-defined]
        from moto.ses.models import ses_backends

        return len(ses_backends[DEFAULT_ACCOUNT_ID][SES_REGION].sent_messages)

    @contextlib.contextmanager
    def watch(self) -> cabc.Iterator[t.Callable[[], SinkStats]]:
        """Sample the sent count every 5 ms while the block runs; the yielded
        callable returns it as :class:`SinkStats` (times to within 5 ms)."""
        stats = SinkStats(0, 0, None, None)
        stop = threading.Event()

        def sample() -> None:
            while True:
                count, now = self.sent_count(), time.monotonic()
                if count and stats.first is None:
                    stats.first = now
                if count != stats.count:
                    stats.count, stats.last = count, now
                if stop.wait(0.005):
                    return

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield lambda: stats
        finally:
            stop.set()
            thread.join(5)

    def stop(self) -> None:
        self._server.stop()


@contextlib.contextmanager
def moto_ses() -> cabc.Iterator[MotoSES]:
    server = MotoSES()
    try:
        server.reset()
        yield server
    finally:
        server.stop()


# -- WSGI server and load ---------------------------------------------------------


@contextlib.contextmanager
def waitress_server(
    config: t.Mapping[str, t.Any], workdir: Path, name: str, threads: int = 4
) -> cabc.Iterator[int]:
    """``benchmarks.app`` served by waitress in a subprocess; yields the port."""
    port = free_port()
    child = Child(
        [
            sys.executable,
            "-m",
            "waitress",
            f"--listen=127.0.0.1:{port}",
            f"--threads={threads}",
            "--call",
            "benchmarks.app:create_app",
        ],
        bench_env(config),
        workdir / f"waitress-{name}.log",
    )

    def ready() -> bool:
        if child.proc.poll() is not None:
            raise RuntimeError(f"waitress exited:\n{child.log_tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    try:
        wait_for(ready, 30, f"waitress on port {port}")
        yield port
    finally:
        child.stop()


@dataclasses.dataclass
class LoadResult:
    #: Seconds per request, in the order they completed.
    latencies: list[float]
    #: Seconds from the first request sent to the last answer read.
    wall: float

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


Request = tuple[str, str, bytes]  # method, path, form-encoded body


def http_load(
    port: int,
    requests: t.Sequence[Request],
    *,
    concurrency: int = 4,
    expect: t.Container[int] = (200,),
    timeout: float = 120,
) -> LoadResult:
    """Send ``requests`` from ``concurrency`` threads, each over its own
    keep-alive connection, each request as soon as the thread's previous one
    is answered (a closed loop). Bounded by ``timeout`` seconds in all.

    :raises RuntimeError: a request failed or got an unexpected status.
    """
    lock = threading.Lock()
    pending = iter(range(len(requests)))
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def next_index() -> int | None:
        with lock:
            if errors or time.monotonic() > deadline:
                return None
            return next(pending, None)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while (i := next_index()) is not None:
                method, path, body = requests[i]
                start = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(f"{method} {path}: {type(e).__name__}: {e}")
                    return
                elapsed = time.perf_counter() - start
                if response.status not in expect:
                    with lock:
                        errors.append(
                            f"{method} {path}: {response.status} {data[:300]!r}"
                        )
                    return
                with lock:
                    latencies.append(elapsed)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic() + 35))
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed; first: {errors[0]}")
    if len(latencies) != len(requests):
        raise RuntimeError(
            f"Only {len(latencies)} of {len(requests)} requests done in {timeout}s."
        )
    return LoadResult(latencies, wall)


# -- Machine ------------------------------------------------------------------


def tree_state(root: Path = ROOT) -> str:
    """The commit of the checkout (or of the source tree ``root``) and how
    many files of its ``flask_confirm/`` differ from it: what is measured."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "flask_confirm"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return f"commit {head}" + (
            f" with {len(dirty.splitlines())} changed file(s) in flask_confirm/"
            if dirty
            else ""
        )
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"


def machine_description() -> list[str]:
    """CPU model, cores, Python, redis-server and PostgreSQL versions, and the
    versions of the libraries measured."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version

    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    try:
        redis_version = subprocess.run(
            ["redis-server", "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split()[2]
        redis_version = redis_version.removeprefix("v=")
    except (OSError, IndexError, subprocess.SubprocessError):
        redis_version = "unknown"
    try:
        pg_version = postgres_version()
    except sa.exc.SQLAlchemyError:
        pg_version = "unreachable"
    packages = []
    for name in ("flask", "flask-confirm", "rq", "redis", "sqlalchemy", "waitress"):
        try:
            packages.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            packages.append(f"{name} (not installed)")
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"CPU: {cpu}; {cores} cores ({usable} usable); {mem_gib:.0f} GiB memory",
        f"Python {sys.version.split()[0]} ({sys.platform});"
        f" redis-server {redis_version}; PostgreSQL {pg_version}",
        "Packages: " + ", ".join(packages),
        f"Flask-Confirm measured: {tree_state()}",
    ]
