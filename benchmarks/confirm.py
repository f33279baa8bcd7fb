"""``confirm``: throughput of the confirm POST.

Each request confirms a different unconfirmed user with a fresh token, made
beforehand in this process with ``confirm.make_token(user)``. Flask-Confirm's
``POST /confirm/<token>`` (check the token, one ``UPDATE ... RETURNING``
that confirms the row, compare the address digest with the row returned,
commit, flash, redirect) against a bare route doing only the row update
(``UPDATE ... SET email_confirmed_at = now() WHERE id = ...``), same waitress
server, 4 client threads. Once more with an ``email_confirmed`` receiver
connected (reading ``user.email``), on a server of its own: the ``UPDATE``
then returns the whole row, made into the user object the receiver gets.

And against the same bare route, a confirm view as an app writes it by
hand at its leanest (``POST /hand-confirm/<token>``: the token checked, the
``UPDATE``, commit, flash, redirect): what any confirm page costs beyond the
``UPDATE``, so that the rest of Flask-Confirm's gap is its own (the token's
binding and single use, the security headers, JSON or HTML).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import sqlalchemy as sa

from benchmarks import app as bench_app
from benchmarks.common import http_load
from benchmarks.common import log
from benchmarks.common import postgres_database
from benchmarks.common import redis_server
from benchmarks.common import Request
from benchmarks.common import Results
from benchmarks.common import Row
from benchmarks.common import waitress_server
from benchmarks.worker import confirm_config

NAME = "confirm"
CONFIRM = "flask-confirm POST /confirm/<token>"
RECEIVER = "flask-confirm POST, an email_confirmed receiver"
HAND = "hand-written confirm route (token, UPDATE, flash)"
BARE = "bare UPDATE route (baseline)"


def run(quick: bool, runs: int) -> list[Row]:
    count = 30 if quick else 1000
    warmup = 5 if quick else 50
    per_variant = warmup + count * runs
    results = Results(NAME)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis = stack.enter_context(redis_server(workdir))
        db_url = stack.enter_context(postgres_database())
        config = confirm_config(db_url, redis, None, CONFIRM_SENDER="smtp")
        app = bench_app.create_app(config)
        stack.callback(bench_app.close, app)
        bench_app.reset_tables(app)
        # Ids 1..per_variant get tokens, the next per_variant too (for the
        # server with a receiver), the next hand-written tokens; the last
        # per_variant go to the bare route.
        bench_app.insert_users(app, 2 * per_variant, "token-", requested=False)
        bench_app.insert_users(app, per_variant, "hand-", requested=False)
        bench_app.insert_users(app, per_variant, "bare-", requested=False)
        db, user_model, confirm = bench_app.parts(app)
        with app.app_context():
            users = db.session.scalars(
                sa.select(user_model)
                .where(user_model.id <= 2 * per_variant)
                .order_by(user_model.id)
            ).all()
            tokens = [confirm.make_token(user) for user in users]
            hand_users = db.session.scalars(
                sa.select(user_model)
                .where(user_model.id > 2 * per_variant)
                .where(user_model.id <= 3 * per_variant)
                .order_by(user_model.id)
            ).all()
            hand_tokens = [bench_app.hand_token(app, user) for user in hand_users]
            db.session.rollback()
        token_requests: list[Request] = [
            ("POST", f"/confirm/{token}", b"") for token in tokens[:per_variant]
        ]
        receiver_requests: list[Request] = [
            ("POST", f"/confirm/{token}", b"") for token in tokens[per_variant:]
        ]
        hand_requests: list[Request] = [
            ("POST", f"/hand-confirm/{token}", b"") for token in hand_tokens
        ]
        bare_requests: list[Request] = [
            ("POST", f"/bare-confirm/{user_id}", b"")
            for user_id in range(3 * per_variant + 1, 4 * per_variant + 1)
        ]

        port = stack.enter_context(waitress_server(config, workdir, "confirm"))
        receiver_config = {**config, bench_app.RECEIVER_KEY: True}
        receiver_port = stack.enter_context(
            waitress_server(receiver_config, workdir, "confirm-receiver")
        )
        variants = (
            (CONFIRM, port, token_requests),
            (RECEIVER, receiver_port, receiver_requests),
            (HAND, port, hand_requests),
            (BARE, port, bare_requests),
        )
        for _, variant_port, requests in variants:
            http_load(variant_port, requests[:warmup], expect=(302,))
        for run_index in range(runs):
            chunk = slice(warmup + run_index * count, warmup + (run_index + 1) * count)
            for name, variant_port, requests in variants:
                log(f"{NAME}: run {run_index + 1}/{runs}, {name}, {count} requests")
                result = http_load(
                    variant_port,
                    requests[chunk],
                    expect=(302,),
                    timeout=60 + count / 2,
                )
                results.add(name, "req/s", result.rps)
                results.add(name, "p50 ms", result.p50_ms)
                results.add(name, "p99 ms", result.p99_ms)

        with app.app_context():
            confirmed = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(user_model)
                .where(user_model.email_confirmed_at.is_not(None))
            )
            db.session.rollback()
        if confirmed != 4 * per_variant:
            raise RuntimeError(f"{confirmed} users confirmed, not {4 * per_variant}.")
    return results.rows({CONFIRM: BARE, RECEIVER: BARE, HAND: BARE})
