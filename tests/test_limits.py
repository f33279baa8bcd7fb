"""Rate limits: parsing, the Redis sliding-window limiter against the test's
real Redis, and the limits on resend through the app (per client IP, then per
address), with real waits of at most a second or two."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import typing as t
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.serving import make_server

from conftest import serving
from flask_confirm import ConfigError
from flask_confirm.limits import fold_address
from flask_confirm.limits import parse_limit
from flask_confirm.limits import RateLimiter
from flask_confirm.limits import Window
from flask_confirm.web.resend import RATE_LIMITED_MESSAGE
from flask_confirm.web.resend import RESEND_MESSAGE
from testapp import create_app

if t.TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

    from conftest import AppFactory
    from flask_confirm import EmailMessage

PREFIX = "flask-confirm:limit"


# -- parse_limit ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20 per hour", (Window(20, 3600),)),
        ("20/hour", (Window(20, 3600),)),
        ("20 / hour", (Window(20, 3600),)),
        ("1 per 3 minutes; 5 per day", (Window(1, 180), Window(5, 86400))),
        ("1 per 3 minutes;5 per day", (Window(1, 180), Window(5, 86400))),
        ("2 per 1 second", (Window(2, 1),)),
        ("2 per second", (Window(2, 1),)),
        ("10 per 2 hours", (Window(10, 7200),)),
        ("1/day", (Window(1, 86400),)),
        ("  3 PER Minute  ", (Window(3, 60),)),
        ("7 per 7 Days", (Window(7, 7 * 86400),)),
        (
            "1 per second; 10 per minute; 100 per hour; 1000 per day",
            (Window(1, 1), Window(10, 60), Window(100, 3600), Window(1000, 86400)),
        ),
    ],
)
def test_parse_limit(text: str, expected: tuple[Window, ...]) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "per hour",
        "20",
        "20 hour",
        "20 per",
        "20 per fortnight",
        "20 per 3",
        "twenty per hour",
        "1.5 per hour",
        "-1 per hour",
        "0 per hour",
        "1 per 0 seconds",
        "1 per hour;",
        "; 1 per hour",
        "1 per hour, 5 per day",
        "1 per hour 5 per day",
        "1 per -3 minutes",
        "1 per 3 minutes; 5 per dya",
    ],
)
def test_parse_limit_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_limit(text)


def test_parse_limit_names_the_bad_part() -> None:
    with pytest.raises(ValueError, match="'5 per dya'"):
        parse_limit("1 per 3 minutes; 5 per dya")


@pytest.mark.parametrize(
    "key", ["CONFIRM_RESEND_IP_LIMIT", "CONFIRM_RESEND_ADDRESS_LIMIT"]
)
@pytest.mark.parametrize(
    "value", ["lots", "0 per hour", "5 per dya", 20, 1.5, ["5 per day"]]
)
def test_bad_limit_is_a_config_error(key: str, value: t.Any) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(**{key: value})
    message = str(info.value)
    assert key in message
    assert repr(value) in message


@pytest.mark.parametrize("value", [0, -1, "16k", 16.0, True, None])
def test_bad_max_content_length_is_a_config_error(value: t.Any) -> None:
    with pytest.raises(ConfigError, match="CONFIRM_MAX_CONTENT_LENGTH"):
        create_app(CONFIRM_MAX_CONTENT_LENGTH=value)


def test_limit_defaults_and_none() -> None:
    app = create_app()
    assert app.config["CONFIRM_RESEND_IP_LIMIT"] == "20 per hour"
    assert app.config["CONFIRM_RESEND_ADDRESS_LIMIT"] == "1 per 3 minutes; 5 per day"
    assert app.config["CONFIRM_MAX_CONTENT_LENGTH"] == 16 * 1024
    # None switches a limit off; that is not an error.
    create_app(CONFIRM_RESEND_IP_LIMIT=None, CONFIRM_RESEND_ADDRESS_LIMIT=None)


# -- RateLimiter against Redis ------------------------------------------------------


@pytest.fixture()
def limiter(redis_client: redis.Redis) -> RateLimiter:
    return RateLimiter(redis_client, b"test-limits-key")


def limit_keys(client: redis.Redis) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(f"{PREFIX}:*"))


# Tests with one-second windows conclude only from what happened within the
# window; on a machine too busy to make a few requests in 0.8 s they start
# again (at most three times) rather than conclude wrongly.


class TooSlow(Exception):
    pass


def in_time(start: float, budget: float = 0.8) -> None:
    """Raise :class:`TooSlow` if more than ``budget`` seconds passed since
    ``start``: what follows depends on being inside a one-second window."""
    if time.monotonic() - start > budget:
        raise TooSlow


def retried(scenario: t.Callable[[int], None]) -> None:
    """Run ``scenario(attempt)`` until it is not :class:`TooSlow`."""
    for attempt in range(3):
        try:
            scenario(attempt)
        except TooSlow:
            continue
        return
    pytest.fail("Three attempts were too slow to tell inside a 1-second window.")


def test_allows_n_then_refuses(limiter: RateLimiter) -> None:
    windows = parse_limit("3 per hour")
    assert [limiter.hit("s", "id", windows) for _ in range(3)] == [0.0, 0.0, 0.0]
    for _ in range(5):
        wait = limiter.hit("s", "id", windows)
        assert 3590 < wait <= 3600


def test_waits_for_the_oldest_hit_to_leave_the_window(limiter: RateLimiter) -> None:
    windows = parse_limit("2 per 1 second")

    def scenario(attempt: int) -> None:
        who = f"id-{attempt}"
        start = time.monotonic()
        results = [limiter.hit("s", who, windows) for _ in range(3)]
        in_time(start)
        assert results[:2] == [0, 0]
        wait = results[2]
        assert 0 < wait <= 1.0
        assert wait >= 1.0 - (time.monotonic() - start) - 0.05
        time.sleep(wait + 0.05)
        # A sliding window: the two hits have left it, so two more are allowed.
        start = time.monotonic()
        results = [limiter.hit("s", who, windows) for _ in range(3)]
        in_time(start)
        assert results[:2] == [0, 0]
        assert results[2] > 0

    retried(scenario)


def test_a_refused_hit_is_not_counted(
    limiter: RateLimiter, redis_client: redis.Redis
) -> None:
    windows = parse_limit("2 per 1 second; 3 per hour")

    def scenario(attempt: int) -> None:
        redis_client.flushdb()
        start = time.monotonic()
        allowed = [limiter.hit("s", "id", windows) for _ in range(2)]
        # Refused by the one-second window, many times: neither window
        # counts them.
        refused = [limiter.hit("s", "id", windows) for _ in range(10)]
        in_time(start)
        assert allowed == [0, 0]
        assert all(0 < wait <= 1.0 for wait in refused), refused
        counts = {key: redis_client.zcard(key) for key in limit_keys(redis_client)}
        assert sorted(counts.values()) == [2, 2], counts
        time.sleep(1.1)
        # The hour window has room for exactly one more.
        assert limiter.hit("s", "id", windows) == 0
        wait = limiter.hit("s", "id", windows)
        assert 3590 < wait <= 3600

    retried(scenario)


def test_the_longest_wait_is_given(limiter: RateLimiter) -> None:
    windows = parse_limit("1 per 1 second; 1 per hour")
    assert limiter.hit("s", "id", windows) == 0
    # Both windows refuse; the hour's wait is the one that matters.
    assert 3590 < limiter.hit("s", "id", windows) <= 3600


def test_scopes_and_identifiers_are_separate(limiter: RateLimiter) -> None:
    windows = parse_limit("1 per hour")
    assert limiter.hit("resend-ip", "a", windows) == 0
    assert limiter.hit("resend-ip", "a", windows) > 0
    assert limiter.hit("resend-ip", "b", windows) == 0
    assert limiter.hit("resend-address", "a", windows) == 0
    assert limiter.hit("resend-ip", "A", windows) == 0  # exact, not folded


def test_no_windows_means_no_limit(
    limiter: RateLimiter, redis_client: redis.Redis
) -> None:
    for _ in range(100):
        assert limiter.hit("s", "id", ()) == 0
    assert limit_keys(redis_client) == []


def test_keys_expire_with_their_window(
    limiter: RateLimiter, redis_client: redis.Redis
) -> None:
    limiter.hit("s", "id", parse_limit("5 per 1 second; 5 per day"))
    ttls = sorted(redis_client.pttl(key) for key in limit_keys(redis_client))
    assert len(ttls) == 2
    assert 0 < ttls[0] <= 1000
    assert 1000 < ttls[1] <= 86_400_000
    time.sleep(1.1)
    assert len(limit_keys(redis_client)) == 1


def test_concurrent_hits_cannot_slip_past_the_limit(redis_url: str) -> None:
    windows = parse_limit("5 per hour")
    results: list[float] = []
    barrier = threading.Barrier(20)
    lock = threading.Lock()

    def hit() -> None:
        client = redis.Redis.from_url(redis_url)
        try:
            limiter = RateLimiter(client, b"test-limits-key")
            barrier.wait(10)
            wait = limiter.hit("s", "id", windows)
            with lock:
                results.append(wait)
        finally:
            client.close()

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 20
    assert sum(1 for wait in results if wait == 0) == 5


def all_redis_text(client: redis.Redis) -> list[str]:
    """Every key, and every member, value and field of every key, as text."""
    found: list[str] = []
    for raw_key in client.scan_iter("*"):
        found.append(raw_key.decode("utf-8", "replace"))
        kind = client.type(raw_key).decode()
        values: list[t.Any] = []
        if kind == "string":
            values = [client.get(raw_key) or b""]
        elif kind == "zset":
            values = [m for m, _ in client.zrange(raw_key, 0, -1, withscores=True)]
        elif kind == "set":
            values = list(client.smembers(raw_key))
        elif kind == "list":
            values = client.lrange(raw_key, 0, -1)
        elif kind == "hash":
            for field, value in client.hgetall(raw_key).items():
                values += [field, value]
        else:
            raise AssertionError(f"unexpected Redis type {kind} for {raw_key!r}")
        found += [v.decode("utf-8", "replace") for v in values]
    return found


#: What must never be stored as it is. Each local part has a letter that is
#: not a hex digit, so that a random or hashed hex string in Redis cannot
#: contain one by chance ("ada" is in about 1.5 % of SHA-256 hex digests).
SECRETS = ["lovelace@example.org", "Ünal@example.org", "203.0.113.7"]


def test_identifiers_are_stored_hashed(
    limiter: RateLimiter, redis_client: redis.Redis
) -> None:
    windows = parse_limit("1 per 3 minutes; 5 per day")
    for identifier in SECRETS:
        limiter.hit("resend-address", identifier, windows)
    stored = all_redis_text(redis_client)
    assert len(limit_keys(redis_client)) == 2 * len(SECRETS)
    for identifier in SECRETS:
        for piece in (identifier, identifier.lower(), identifier.split("@")[0]):
            assert not any(piece.lower() in s.lower() for s in stored), piece


# -- through the app ---------------------------------------------------------------


def outbox(app: Flask) -> list[EmailMessage]:
    with app.app_context():
        return list(app.extensions["confirm"].sender.outbox)


def add_user(app: Flask, email: str, confirmed: bool = False) -> None:
    """A user in the database, with no mail sent, as an import would leave it."""
    m = app.extensions["test_models"]
    with app.app_context():
        user = m["User"](email=email)
        if confirmed:
            user.email_confirmed_at = dt.datetime.now(dt.timezone.utc)
        m["db"].session.add(user)
        m["db"].session.commit()


def resend(
    client: FlaskClient, email: str, ip: str | None = None, **kwargs: t.Any
) -> TestResponse:
    if ip is not None:
        kwargs["environ_base"] = {"REMOTE_ADDR": ip}
    return client.post("/confirm/resend", data={"email": email}, **kwargs)


def answer(response: TestResponse) -> tuple[int, tuple[tuple[str, str], ...], bytes]:
    """Status, headers (in order) and body: all a client sees."""
    headers = tuple(response.headers.to_wsgi_list())
    return response.status_code, headers, response.get_data()


def assert_limited(response: TestResponse, max_wait: int = 3600) -> int:
    assert response.status_code == 429, response.get_data(as_text=True)
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= max_wait
    body = response.get_data(as_text=True)
    assert RATE_LIMITED_MESSAGE in body
    assert 'role="alert"' in body
    assert RESEND_MESSAGE not in body
    assert "Set-Cookie" not in response.headers
    return int(retry_after)


def test_burst_for_one_address_sends_one_mail(make_app: AppFactory) -> None:
    # Default limits. 50 requests from 50 clients (a botnet, say), all for one
    # victim's address: the per-IP limit never bites, the per-address one does.
    app = make_app()
    add_user(app, "victim@example.org")
    client = app.test_client()
    answers = {
        answer(resend(client, "victim@example.org", ip=f"198.51.100.{i}"))
        for i in range(50)
    }
    assert len(answers) == 1
    ((status, _, body),) = answers
    assert status == 200
    assert RESEND_MESSAGE.encode() in body
    assert [m.to for m in outbox(app)] == ["victim@example.org"]


def test_burst_from_one_client_sends_one_mail(make_app: AppFactory) -> None:
    # The same burst from one client, with the per-IP limit off on purpose so
    # that only the per-address limit is at work.
    app = make_app(CONFIRM_RESEND_IP_LIMIT=None)
    add_user(app, "victim@example.org")
    client = app.test_client()
    answers = {answer(resend(client, "victim@example.org")) for _ in range(50)}
    assert len(answers) == 1
    assert next(iter(answers))[0] == 200
    assert len(outbox(app)) == 1


def test_address_limit_windows(make_app: AppFactory) -> None:
    # "1 per 1 second; 2 per hour" stands in for "1 per 3 minutes; 5 per day".
    app = make_app(
        CONFIRM_RESEND_ADDRESS_LIMIT="1 per 1 second; 2 per hour",
        CONFIRM_RESEND_IP_LIMIT=None,
    )
    client = app.test_client()

    def scenario(attempt: int) -> None:
        ada = f"ada{attempt}@example.org"
        add_user(app, ada)
        sent = len(outbox(app))
        start = time.monotonic()
        first = resend(client, ada)
        # Within the second: nothing sent, same answer, even typed differently.
        others = [resend(client, typed) for typed in (ada, ada.upper(), f" {ada} ")]
        in_time(start)
        assert len(outbox(app)) == sent + 1
        assert [answer(r) for r in others] == [answer(first)] * 3
        time.sleep(1.1)
        assert answer(resend(client, ada)) == answer(first)
        assert len(outbox(app)) == sent + 2
        time.sleep(1.1)
        # The hour's two are used up.
        assert answer(resend(client, ada)) == answer(first)
        assert len(outbox(app)) == sent + 2
        assert {m.to for m in outbox(app)[sent:]} == {ada}

    retried(scenario)
    # Other addresses have limits of their own.
    add_user(app, "grace@example.org")
    resend(client, "grace@example.org")
    assert outbox(app)[-1].to == "grace@example.org"


def test_ip_limit(make_app: AppFactory) -> None:
    # Default limits: 20 per hour per client. Every address differs, so the
    # per-address limit plays no part; every fifth is malformed, and counts too.
    app = make_app()
    add_user(app, "ada@example.org")
    client = app.test_client()
    statuses = []
    limited = []
    for i in range(100):
        email = f"nobody-{i}@example.org" if i % 5 else f"nobody-{i}.example.org"
        response = resend(client, email)
        statuses.append(response.status_code)
        if i < 20:
            expected = 200 if i % 5 else 400
            assert response.status_code == expected, (i, response.status_code)
        else:
            limited.append(response)
    assert statuses[:20].count(400) == 4
    waits = [assert_limited(r) for r in limited]
    # The first hit is at most seconds old: nearly the whole hour to wait.
    assert min(waits) >= 3500
    # The refusal depends on nothing but the client: same answer for any
    # address, registered or not, well-formed or not (the wait aside).
    bodies = {r.get_data() for r in limited}
    assert len(bodies) == 1
    # Over the limit, a registered user's address gets the same 429, and no mail.
    assert_limited(resend(client, "ada@example.org"))
    assert outbox(app) == []
    # Another client is not affected.
    assert resend(client, "ada@example.org", ip="192.0.2.9").status_code == 200
    assert len(outbox(app)) == 1


def test_ip_limit_wait_is_the_window(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_RESEND_IP_LIMIT="2 per 1 second")
    client = app.test_client()

    def scenario(attempt: int) -> None:
        ip = f"192.0.2.{attempt + 1}"
        start = time.monotonic()
        responses = [resend(client, f"{c}@example.org", ip=ip) for c in "abc"]
        in_time(start)
        assert [r.status_code for r in responses[:2]] == [200, 200]
        assert assert_limited(responses[2], max_wait=1) == 1
        time.sleep(1.1)
        assert resend(client, "d@example.org", ip=ip).status_code == 200

    retried(scenario)


def test_ip_limit_is_shared_by_app_instances(make_app: AppFactory) -> None:
    # Two instances (two hosts behind a balancer, say) on one Redis.
    first = make_app(CONFIRM_RESEND_IP_LIMIT="20 per hour").test_client()
    second = make_app(CONFIRM_RESEND_IP_LIMIT="20 per hour").test_client()
    for i in range(10):
        assert resend(first, f"one-{i}@example.org").status_code == 200
    for i in range(10):
        assert resend(second, f"two-{i}@example.org").status_code == 200
    assert_limited(resend(second, "two-10@example.org"))
    assert_limited(resend(first, "one-10@example.org"))


def test_address_limit_is_shared_by_app_instances(make_app: AppFactory) -> None:
    one = make_app(CONFIRM_RESEND_IP_LIMIT=None)
    two = make_app(CONFIRM_RESEND_IP_LIMIT=None)
    for app in (one, two):
        add_user(app, "ada@example.org")
    assert resend(one.test_client(), "ada@example.org").status_code == 200
    assert resend(two.test_client(), "ada@example.org").status_code == 200
    assert len(outbox(one)) + len(outbox(two)) == 1


def test_forwarded_for_counts_behind_proxy_fix(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_RESEND_IP_LIMIT="3 per hour")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = app.test_client()

    def from_(forwarded_for: str, n: int) -> TestResponse:
        return resend(
            client,
            f"n{n}@example.org",
            headers={"X-Forwarded-For": forwarded_for},
        )

    for n in range(3):
        assert from_("203.0.113.1", n).status_code == 200
    assert_limited(from_("203.0.113.1", 3))
    # A different client behind the same proxy has a limit of its own.
    for n in range(3):
        assert from_("203.0.113.2", 10 + n).status_code == 200
    assert_limited(from_("203.0.113.2", 13))
    # Values the client put before the proxy's own are not trusted: ProxyFix
    # with x_for=1 takes the last, which the proxy appended.
    assert_limited(from_("198.51.100.77, 203.0.113.1", 20))
    assert from_("203.0.113.1, 198.51.100.77", 21).status_code == 200


def test_forwarded_for_is_ignored_without_proxy_fix(make_app: AppFactory) -> None:
    app = make_app(CONFIRM_RESEND_IP_LIMIT="3 per hour")
    client = app.test_client()
    for n in range(3):
        response = resend(
            client, f"n{n}@example.org", headers={"X-Forwarded-For": f"203.0.113.{n}"}
        )
        assert response.status_code == 200
    for n in range(3, 6):
        response = resend(
            client, f"n{n}@example.org", headers={"X-Forwarded-For": f"203.0.113.{n}"}
        )
        assert_limited(response)


def test_app_stores_no_address_or_ip_in_redis(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    app = make_app()
    add_user(app, SECRETS[0])
    add_user(app, SECRETS[1])
    client = app.test_client()
    for email in SECRETS[:2]:
        assert resend(client, email, ip="203.0.113.7").status_code == 200
    assert len(outbox(app)) == 2
    assert limit_keys(redis_client)  # the limits were recorded
    stored = all_redis_text(redis_client)
    for secret in SECRETS:
        for piece in (secret, secret.split("@")[0]):
            assert not any(piece.lower() in s.lower() for s in stored), piece


def test_redis_down_fails_open(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(CONFIRM_REDIS_URL="redis://127.0.0.1:1/0", CONFIRM_ASYNC=False)
    add_user(app, "ada@example.org")
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_confirm"):
        start = time.monotonic()
        response = resend(client, "ada@example.org")
        elapsed = time.monotonic() - start
    assert response.status_code == 200
    assert RESEND_MESSAGE in response.get_data(as_text=True)
    assert elapsed < 10
    assert [m.to for m in outbox(app)] == ["ada@example.org"]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_confirm" and r.levelno == logging.WARNING
    ]
    assert any("resend-ip" in w and "ConnectionError" in w for w in warnings), warnings
    assert any("resend-address" in w for w in warnings), warnings
    # The address never reaches the log.
    assert not any("ada" in w for w in warnings)
    # Bad input is still refused without Redis.
    assert resend(client, "ada@localhost").status_code == 400


def test_ipv6_clients_count_by_their_64_network(make_app: AppFactory) -> None:
    client = make_app(CONFIRM_RESEND_IP_LIMIT="2 per hour").test_client()
    # One host commonly holds a whole /64: new addresses in it are no way out.
    assert resend(client, "a@example.org", ip="2001:db8:1:2::1").status_code == 200
    assert resend(client, "b@example.org", ip="2001:db8:1:2::ffff").status_code == 200
    assert_limited(resend(client, "c@example.org", ip="2001:db8:1:2:abcd::7"))
    # Another /64 is another client.
    assert resend(client, "d@example.org", ip="2001:db8:1:3::1").status_code == 200


def test_identifiers_are_keyed_not_plainly_hashed(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    client = make_app().test_client()
    resend(client, "ada@example.org", ip="192.0.2.7")
    text = "\n".join(all_redis_text(redis_client))
    for identifier in ("ada@example.org", "192.0.2.7"):
        # A plain hash of a known address or IP could be recomputed by anyone
        # holding a list of them; the HMAC key is derived from SECRET_KEY.
        assert hashlib.sha256(identifier.encode()).hexdigest()[:32] not in text
    assert any(":resend-address:" in key for key in text.splitlines())


# -- spellings of one address, and the matched user --------------------------------


#: Spellings of ``victim.iris@example.com`` that some database's ``lower()``
#: (or collation) takes for it while Python's ``.lower()`` does not: the
#: dotted capital İ (U+0130), which PostgreSQL lowers to a plain i and
#: Python to i + U+0307; the dotless i (U+0131) and the long s
#: (U+017F), which MariaDB's
#: collations equate with i and s; an accented í; and plain case variants.
SPELLINGS = [
    "victim.iris@example.com",
    "VICTIM.IRIS@example.com",
    "Victim.Iris@example.com",
    *(
        "victim.iris"[:i] + "İ" + "victim.iris"[i + 1 :] + "@example.com"
        for i in (1, 4, 7, 9)
    ),
    "vİctİm.İrİs@example.com",
    "vİctim.İris@example.com",
    "victİm.irİs@example.com",
    "vİctİm.iris@example.com",
    "victim.İrİs@example.com",
    "vİctim.irİs@example.com",
    "victİm.İris@example.com",
    "vİctİm.İris@example.com",
    "vİctİm.irİs@example.com",
    "vİctim.İrİs@example.com",
    "victİm.İrİs@example.com",
    "v\u0131ctim.iris@example.com",
    "victim.iri\u017f@example.com",
    "victím.iris@example.com",
    "VİCTİM.İRİS@example.com",
]


def http_post(base: str, path: str, email: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        base + path,
        data=urllib.parse.urlencode({"email": email}).encode(),
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.parametrize("path", ["/confirm/resend", "/confirm/reset"])
def test_spellings_of_one_address_share_its_limit(
    make_app: AppFactory, database_url: str, path: str
) -> None:
    """The attack of issue 11, item 4: every spelling the database matches to
    the victim's account was a limit of its own (17 spellings, 16 mails on
    PostgreSQL). Now the limit also counts against the account found, so
    the default "1 per 3 minutes" lets one mail through, over real HTTP."""
    app = make_app(
        CONFIRM_PASSWORD_RESET=True,
        CONFIRM_RESEND_IP_LIMIT=None,  # the attacker has many addresses
        SQLALCHEMY_DATABASE_URI=database_url,
    )
    add_user(app, "victim.iris@example.com", confirmed=path.endswith("reset"))
    with app.app_context():
        confirm = app.extensions["confirm"]
        matched = [s for s in SPELLINGS if confirm.find_user(s) is not None]
    # The precondition of the attack: more than one spelling finds the user
    # (on PostgreSQL and MariaDB many that Python's lower() keeps apart).
    assert len(matched) >= 3, matched
    with serving(app) as base:
        answers = [http_post(base, path, email) for email in SPELLINGS]
        answers.append(http_post(base, path, "nobody@example.com"))
    # One answer for all, the unknown address included: nothing to enumerate.
    assert len(set(answers)) == 1, {a[0] for a in answers}
    assert answers[0][0] == 200
    assert [m.to for m in outbox(app)] == ["victim.iris@example.com"]


def test_address_text_is_compared_casefolded(limiter: RateLimiter) -> None:
    # One normalised form for the text: "Straße" and "STRASSE" fold alike
    # (lower() does not), so do the compatibility forms of a letter.
    windows = parse_limit("1 per hour")
    assert fold_address("Straße@example.org") == fold_address("STRASSE@example.org")
    assert fold_address("ﬁn@example.org") == fold_address("FIN@example.org")
    assert limiter.hit("s", fold_address("straße@example.org"), windows) == 0
    assert limiter.hit("s", fold_address("STRASSE@example.org"), windows) > 0


def test_one_hit_counts_against_every_identifier(limiter: RateLimiter) -> None:
    windows = parse_limit("1 per hour")
    assert limiter.hit("s", ["text-a", "user:7"], windows) == 0
    # Another text for the same user: refused, and not counted for the text.
    assert limiter.hit("s", ["text-b", "user:7"], windows) > 0
    assert limiter.hit("s", ["text-b"], windows) == 0
    assert limiter.hit("s", ["text-a"], windows) > 0


# -- SECRET_KEY rotation -----------------------------------------------------------


def test_limits_survive_a_secret_key_rotation(
    make_app: AppFactory, redis_client: redis.Redis
) -> None:
    """Rotating SECRET_KEY (the old one moved to SECRET_KEY_FALLBACKS) reset
    every limit: the limiter's key came from the newest key only. Each step
    is a new app instance on the same Redis, as a deployment would be."""
    old = "old-secret-key-that-is-long-enough"
    new = "new-secret-key-that-is-long-enough"
    limits = {"CONFIRM_RESEND_IP_LIMIT": "3 per hour"}

    def client(**config: t.Any) -> FlaskClient:
        return make_app(**limits, **config).test_client()

    before = client(SECRET_KEY=old)
    for n in range(3):
        assert resend(before, f"n{n}@example.org").status_code == 200
    assert_limited(resend(before, "n3@example.org"))
    # Rotated: the new key signs, the old one is still accepted.
    rotating = client(SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old])
    assert_limited(resend(rotating, "n4@example.org"))
    # The old key dropped at last: what was counted during the rotation holds.
    after = client(SECRET_KEY=new)
    assert_limited(resend(after, "n5@example.org"))
    # And another client still has a limit of its own.
    assert resend(after, "n6@example.org", ip="192.0.2.77").status_code == 200
    # Every key, those the rotation merged into included, expires.
    assert all(redis_client.pttl(key) > 0 for key in limit_keys(redis_client))


def test_rotation_merges_each_window_once(redis_client: redis.Redis) -> None:
    windows = parse_limit("2 per hour; 3 per day")
    old = RateLimiter(redis_client, b"old")
    assert old.hit("s", "id", windows) == 0
    rotating = RateLimiter(redis_client, [b"old", b"new"])
    # One more is allowed (the old key's hit is counted, not twice).
    assert rotating.hit("s", "id", windows) == 0
    assert rotating.hit("s", "id", windows) > 0
    new = RateLimiter(redis_client, b"new")
    assert 3590 < new.hit("s", "id", windows) <= 3600
    assert sorted(redis_client.zcard(k) for k in limit_keys(redis_client)) == [2] * 4


# -- no client address -------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket, as a reverse proxy talks to the app server."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        self.sock = sock


def test_without_a_client_address_all_share_one_limit_and_it_is_said(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Served on a unix socket without ProxyFix, there is no client address
    (Werkzeug says "<local>", others nothing): every visitor counts as one
    client. That is documented; the app also logs it, once."""
    app = make_app(CONFIRM_RESEND_IP_LIMIT="2 per hour")
    folder = tempfile.mkdtemp(prefix="fc-")
    path = os.path.join(folder, "app.sock")
    server = make_server(f"unix://{path}", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def post(email: str, forwarded_for: str) -> int:
        connection = UnixHTTPConnection(path)
        try:
            connection.request(
                "POST",
                "/confirm/resend",
                body=urllib.parse.urlencode({"email": email}),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Forwarded-For": forwarded_for,
                },
            )
            return connection.getresponse().status
        finally:
            connection.close()

    try:
        with caplog.at_level(logging.WARNING, logger="flask_confirm"):
            # Three visitors, as the proxy in front would say; one bucket.
            statuses = [
                post(f"n{i}@example.org", f"203.0.113.{i}") for i in range(1, 4)
            ]
    finally:
        server.shutdown()
        thread.join(10)
        shutil.rmtree(folder)
    assert statuses == [200, 200, 429]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_confirm" and "client address" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert "ProxyFix" in warnings[0] and "CONFIRM_RESEND_IP_LIMIT" in warnings[0]
