"""CPU per message of the ``smtp`` sender, in this process only.

    .venv/bin/python -m benchmarks.senders_micro [--messages 2000] [--runs 5]

Builds and sends N messages over one kept-open SMTP connection into the
benchmarks' SMTP sink (``benchmarks.smtpsink``, a subprocess, so that its work
is not counted), and reports the median over K runs of this process's CPU
time (``time.process_time``) and of the wall time, per message:

- ``flask-mail``: what the ``smtp`` sender did before, a ``flask_mail.Message``
  per mail sent with Flask-Mail's ``Connection.send``;
- ``SMTPSender``: :class:`flask_confirm.senders.SMTPSender` as it is now;
- ``... build only``: the same two without the sending (``Message.as_bytes()``,
  and the new sender's message rendering), to tell building from SMTP.

Two message sets: English (ASCII) and German (UTF-8 subject and bodies, and
a From name with umlauts). Not part of ``benchmarks.run``; standard output is
one Markdown table.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import flask_mail
from flask import Flask

from benchmarks.common import log
from benchmarks.common import smtp_sink
from benchmarks.common import SMTPSink
from flask_confirm.config.keys import DEFAULTS
from flask_confirm.mail.mime import OutgoingMail
from flask_confirm.senders import EmailMessage
from flask_confirm.senders import SMTPSender

LINK = "https://app.example.test/confirm/" + "IjEyMyI.Zx9aBc.d3f4Ul7t0k3nS1gn4tuR3" * 3

TEXT = """Hello,

Please confirm your email address by opening this link:

{link}

The link is valid for 24 hours. If you did not sign up, you can ignore this message.
"""

TEXT_DE = """Hallo,

bitte bestätigen Sie Ihre E-Mail-Adresse über diesen Link:

{link}

Der Link ist 24 Stunden gültig. Wenn Sie sich nicht angemeldet haben, können Sie
diese Nachricht ignorieren.
"""

HTML = """<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><title>{title}</title></head>
<body style="margin:0;padding:0;background:#f5f6f8;">
  <table role="presentation" width="100%" cellpadding="0" cellspacing="0" \
style="background:#f5f6f8;padding:24px 0;">
    <tr><td align="center">
      <table role="presentation" width="480" cellpadding="0" cellspacing="0" \
style="background:#ffffff;border-radius:8px;padding:32px;\
font-family:Arial,Helvetica,sans-serif;color:#1f2328;">
        <tr><td style="font-size:20px;font-weight:bold;padding-bottom:16px;">\
{title}</td></tr>
        <tr><td style="font-size:15px;line-height:1.5;padding-bottom:24px;">\
{intro}</td></tr>
        <tr><td style="padding-bottom:24px;">
          <a href="{link}" style="background:#2563eb;color:#ffffff;\
text-decoration:none;padding:12px 24px;border-radius:6px;display:inline-block;\
font-size:15px;">{button}</a>
        </td></tr>
        <tr><td style="font-size:13px;line-height:1.5;color:#57606a;">{outro}<br>\
<span style="word-break:break-all;">{link}</span></td></tr>
      </table>
    </td></tr>
  </table>
</body>
</html>
"""

#: name -> (From, subject, text, html)
MESSAGE_SETS: dict[str, tuple[str, str, str, str]] = {
    "ascii": (
        "Example <no-reply@example.com>",
        "Confirm your email address",
        TEXT.format(link=LINK),
        HTML.format(
            lang="en",
            title="Confirm your email address",
            intro="Please confirm your email address by pressing the button below.",
            button="Confirm my address",
            outro="The link is valid for 24 hours. If the button does not work,"
            " copy this address into your browser:",
            link=LINK,
        ),
    ),
    "utf-8": (
        "Bücherstube Müller <no-reply@example.com>",
        "Bestätigen Sie Ihre E-Mail-Adresse",
        TEXT_DE.format(link=LINK),
        HTML.format(
            lang="de",
            title="Bestätigen Sie Ihre E-Mail-Adresse",
            intro="Bitte bestätigen Sie Ihre Adresse über die Schaltfläche unten.",
            button="Adresse bestätigen",
            outro="Der Link ist 24 Stunden gültig. Wenn die Schaltfläche nicht"
            " funktioniert, kopieren Sie diese Adresse in Ihren Browser:",
            link=LINK,
        ),
    ),
}


def messages(kind: str, count: int) -> list[EmailMessage]:
    sender, subject, text, html = MESSAGE_SETS[kind]
    return [
        EmailMessage(
            to=f"user{i}@example.org",
            sender=sender,
            subject=subject,
            text=text,
            html=html,
        )
        for i in range(count)
    ]


def flask_mail_message(message: EmailMessage) -> t.Any:
    """As the ``smtp`` sender made it before."""
    return flask_mail.Message(
        subject=message.subject,
        recipients=[message.to],
        body=message.text,
        html=message.html,
        sender=message.sender,
    )


Timing = tuple[float, float]  # CPU seconds, wall seconds


def timed(loop: t.Callable[[], None]) -> Timing:
    cpu, wall = time.process_time(), time.perf_counter()
    loop()
    return time.process_time() - cpu, time.perf_counter() - wall


def run_flask_mail(app: Flask, batch: list[EmailMessage]) -> Timing:
    with app.app_context():
        connection = flask_mail.Connection(app.extensions["mail"])
        connection.__enter__()
        connection.send(flask_mail_message(batch[0]))  # warm up, untimed

        def loop() -> None:
            for message in batch:
                connection.send(flask_mail_message(message))

        result = timed(loop)
        assert connection.host is not None
        connection.host.quit()
    return result


def run_smtp_sender(app: Flask, batch: list[EmailMessage]) -> Timing:
    with app.app_context():
        sender = SMTPSender(app)
        sender.send(batch[0])  # opens the connection; untimed

        def loop() -> None:
            for message in batch:
                sender.send(message)

        result = timed(loop)
        sender.close()
    return result


def run_flask_mail_build(app: Flask, batch: list[EmailMessage]) -> Timing:
    def loop() -> None:
        for message in batch:
            mail = flask_mail_message(message)
            mail.date = time.time()  # as Connection.send sets it
            mail.as_bytes()

    with app.app_context():
        return timed(loop)


def run_smtp_sender_build(app: Flask, batch: list[EmailMessage]) -> Timing:
    with app.app_context():
        connection = flask_mail.Connection(app.extensions["mail"])
        connection.__enter__()  # render() asks the server what it offers
        host = connection.host
        assert host is not None  # MAIL_SUPPRESS_SEND is off

        def loop() -> None:
            for message in batch:
                OutgoingMail.prepare(message, str(message.sender)).render(host)

        result = timed(loop)
        host.quit()
    return result


VARIANTS: dict[str, t.Callable[[Flask, list[EmailMessage]], Timing]] = {
    "flask-mail": run_flask_mail,
    "SMTPSender": run_smtp_sender,
    "flask-mail build only": run_flask_mail_build,
    "SMTPSender build only": run_smtp_sender_build,
}
SENDS = {"flask-mail", "SMTPSender"}


def make_app(sink: SMTPSink) -> Flask:
    app = Flask(__name__)
    # The sender reads Flask-Confirm's settings; no Confirm here, so the
    # defaults, as init_app would set them.
    app.config.update(DEFAULTS)
    app.config.update(sink.config(), MAIL_SUPPRESS_SEND=False)
    flask_mail.Mail(app)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    count, runs = args.messages, args.runs

    results: dict[tuple[str, str], list[Timing]] = {}
    with tempfile.TemporaryDirectory() as tmp, smtp_sink(Path(tmp)) as sink:
        app = make_app(sink)
        for kind in MESSAGE_SETS:
            batch = messages(kind, count)
            for run in range(1, runs + 1):
                for variant, function in VARIANTS.items():
                    sink.reset()
                    log(f"{kind} run {run}/{runs}: {variant}")
                    results.setdefault((kind, variant), []).append(function(app, batch))
                    if variant in SENDS:
                        received = sink.stats().count
                        # + 1: the untimed first message.
                        if received != count + 1:
                            raise RuntimeError(
                                f"{variant}: the sink got {received} mails,"
                                f" not {count + 1}."
                            )

    fqdn_calls = 200
    start = time.perf_counter()
    for _ in range(fqdn_calls):
        socket.getfqdn()
    fqdn_us = (time.perf_counter() - start) / fqdn_calls * 1e6

    print(
        f"{count} messages per run, median of {runs} runs; Python"
        f" {sys.version.split()[0]}. socket.getfqdn() (called per mail by"
        f" flask_mail.Message) took {fqdn_us:.0f} µs wall here.\n"
    )
    print(
        "| messages | variant | CPU µs/mail | spread | wall µs/mail | vs flask-mail |"
    )
    print("|---|---|---|---|---|---|")
    for kind in MESSAGE_SETS:
        base = statistics.median(c for c, _ in results[(kind, "flask-mail")])
        base_build = statistics.median(
            c for c, _ in results[(kind, "flask-mail build only")]
        )
        for variant in VARIANTS:
            values = results[(kind, variant)]
            cpu = [c / count * 1e6 for c, _ in values]
            wall = [w / count * 1e6 for _, w in values]
            reference = base_build if "build" in variant else base
            ratio = statistics.median(c for c, _ in values) / reference
            print(
                f"| {kind} | {variant} | {statistics.median(cpu):.0f} |"
                f" {min(cpu):.0f}..{max(cpu):.0f} | {statistics.median(wall):.0f} |"
                f" {ratio:.2f}x |"
            )


if __name__ == "__main__":
    main()
