"""The ``flask confirm`` commands: sweep, status, failed, retry-failed, send,
resend-all, mark-confirmed, suppressed, unsuppress. Each is a thin shell over
a service. Internal."""

from __future__ import annotations

import collections
import mailbox
import sys
import typing as t

import click
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import RedisError

from .. import dsn
from .. import feedback
from .. import outbox
from .. import stats
from .. import store
from .. import suppression
from ..addresses import InvalidEmail
from ..addresses import normalize_email
from ..mail.verp import ReturnPath
from ..models import email_of
from ..models import primary_key
from ..outbox import bulk
from ..state import get_state


@click.group("confirm")
def confirm_group() -> None:
    """Operate on email confirmations."""


@confirm_group.command("sweep")
@click.option(
    "--older-than",
    type=click.IntRange(min=0),
    default=None,
    help="Only requests at least this many seconds old."
    " Default: CONFIRM_SWEEP_AFTER; 0 for every pending one.",
)
@with_appcontext
def sweep_command(older_than: int | None) -> None:
    """Queue again every confirmation requested but not sent. Cron-friendly:
    safe to run on many hosts at once."""
    count = bulk.sweep(get_state(), older_than, 0)
    click.echo(f"Queued {count} pending confirmation(s).")


@confirm_group.command("status")
@with_appcontext
def status_command() -> None:
    """Count confirmations by state."""
    status = bulk.status(get_state())
    for name in ("none", "requested", "sent", "failed", "confirmed"):
        click.echo(f"{name:<15}{status[name]}")
    oldest = status["oldest_pending"]
    age = f"{int(oldest.total_seconds())}s" if oldest is not None else "-"
    click.echo(f"{'oldest pending':<15}{age}")
    state = get_state()
    if not state.settings.is_async:
        return  # mails go out inline: nothing was counted
    try:
        periods = {"24 h": stats.totals(state, 24), "7 days": stats.totals(state, 168)}
    except RedisError as e:
        click.echo(f"Mail counts unavailable: Redis error {type(e).__name__}.")
        return
    click.echo("")
    click.echo(f"{'mails':<22}" + "".join(f"{p:>31}" for p in periods))
    names = f"{'sent':>10}{'bounced':>10}{'complained':>11}"
    click.echo(f"{'':<22}" + names * len(periods))
    for kind in stats.KINDS:
        rows = [periods[p][kind] for p in periods]
        if not any(any(r.values()) for r in rows):
            continue
        cells = "".join(
            f"{r['sent']:>10}{r['bounced']:>10}{r['complained']:>11}" for r in rows
        )
        click.echo(f"{kind:<22}{cells}")
    for period, counts in periods.items():
        for warning in stats.warnings(counts):
            click.echo(f"Warning ({period}): {warning}.")


@confirm_group.command("failed")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@with_appcontext
def failed_command(limit: int) -> None:
    """List confirmations that failed for good, with the reason."""
    users = bulk.failed(get_state(), limit)
    for user in users:
        failed_at = user.confirmation_failed_at.isoformat(timespec="seconds")
        click.echo(f"{_address(user)}\t{failed_at}\t{user.confirmation_error}")
    if not users:
        click.echo("No failed confirmations.")


@confirm_group.command("retry-failed")
@with_appcontext
def retry_failed_command() -> None:
    """Request and queue again every confirmation that failed for good."""
    count = bulk.retry_failed(get_state())
    click.echo(f"Queued {count} failed confirmation(s) again.")


@confirm_group.command("send")
@click.argument("email")
@with_appcontext
def send_command(email: str) -> None:
    """Queue a confirmation mail for the user with address EMAIL."""
    state = get_state()
    try:
        user = store.find_user(state, normalize_email(email))
    except InvalidEmail as e:
        raise click.BadParameter(str(e), param_hint="EMAIL") from None
    if user is None:
        raise click.ClickException(f"No user has the address {email!r}.")
    if user.email_confirmed:
        click.echo(f"{_address(user)} is already confirmed; nothing sent.")
        return
    job_id = outbox.send_confirmation(state, user)
    click.echo(f"Queued a confirmation for {_address(user)} (job {job_id}).")


@confirm_group.command("resend-all")
@click.option(
    "--unconfirmed",
    is_flag=True,
    required=True,
    help="Required: only unconfirmed users are sent to (spelled out on purpose).",
)
@click.option(
    "--older-than",
    type=click.IntRange(min=0),
    default=None,
    help="Only users whose last request is at least this many seconds old.",
)
@with_appcontext
def resend_all_command(unconfirmed: bool, older_than: int | None) -> None:
    """Request a new link for every unconfirmed user, in pipelined batches."""
    if not unconfirmed:  # pragma: no cover - click enforces the flag
        raise click.UsageError("Pass --unconfirmed.")
    with click.progressbar(length=1, label="Queuing", show_pos=True) as bar:

        def advance(done: int, total: int) -> None:
            bar.length = total
            bar.update(done)

        count = bulk.resend_all(get_state(), older_than, 1000, advance)
    click.echo(f"Queued {count} confirmation(s).")


@confirm_group.command("mark-confirmed")
@click.option(
    "--existing",
    is_flag=True,
    help="Mark every user never asked to confirm (state 'none'): the accounts"
    " that predate Flask-Confirm.",
)
@click.argument("emails", metavar="[EMAIL]...", nargs=-1)
@with_appcontext
def mark_confirmed_command(existing: bool, emails: tuple[str, ...]) -> None:
    """Record addresses as confirmed without a link: every existing user
    (--existing), or the users with the addresses EMAIL. Users who were sent
    a link and have not confirmed are never touched by --existing."""
    if existing == bool(emails):
        raise click.UsageError(
            "Give --existing (every user never asked to confirm) or the EMAIL"
            " addresses of the users to mark, not both."
        )
    state = get_state()
    if existing:
        count = bulk.mark_confirmed(state, None)
        click.echo(f"Marked {count} existing user(s) as confirmed.")
        return
    users, unknown = [], []
    for email in emails:
        user = store.find_user(state, email)
        if user is None:
            unknown.append(email)
        else:
            users.append(user)
    if unknown:
        raise click.ClickException(
            f"No user has the address(es) {', '.join(map(repr, unknown))};"
            " nothing was marked."
        )
    count = bulk.mark_confirmed(state, [primary_key(user) for user in users])
    already = len({id(user) for user in users}) - count
    click.echo(
        f"Marked {count} user(s) as confirmed"
        + (f" ({already} already were)." if already else ".")
    )


@confirm_group.command("suppressed")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@with_appcontext
def suppressed_command(limit: int) -> None:
    """List the suppressed addresses, which no mail is sent to, the most
    recently seen first: address, reason, source, last seen."""
    rows = suppression.suppressed(get_state(), limit)
    for row in rows:
        last_seen = row.last_seen.isoformat(timespec="seconds")
        click.echo(f"{row.address}\t{row.reason}\t{row.source}\t{last_seen}")
    if not rows:
        click.echo("No suppressed addresses.")


@confirm_group.command("unsuppress")
@click.argument("email")
@with_appcontext
def unsuppress_command(email: str) -> None:
    """Take EMAIL off the suppression list, so that mail is sent to it again
    (a failed confirmation once it is requested again: retry-failed)."""
    if not suppression.unsuppress(get_state(), email):
        raise click.ClickException(f"{email!r} is not suppressed.")
    click.echo(f"{email} is no longer suppressed.")


def _address(user: t.Any) -> str:
    """``user``'s address, from :data:`CONFIRM_EMAIL_ATTRIBUTE`."""
    return email_of(user, get_state().settings.email_attribute)


#: The exit status that asks an MTA to deliver again later (sysexits.h).
EX_TEMPFAIL = 75


@confirm_group.command("bounces")
@click.option(
    "--maildir",
    type=click.Path(exists=True, file_okay=False),
    help="Read every new message of this Maildir (then mark it seen) instead"
    " of one message from standard input.",
)
@click.option(
    "--recipient",
    metavar="ADDRESS",
    help="The address the MTA delivered the message to (a pipe's"
    " ${original_recipient}), if its headers do not say.",
)
@with_appcontext
def bounces_command(maildir: str | None, recipient: str | None) -> None:
    """Apply delivery status notifications (bounces) for CONFIRM_RETURN_PATH:
    one message from standard input (an MTA pipe), or a Maildir's new ones.
    Only a DSN sent to a validly tagged return path counts; a hard bounce
    suppresses its address. Exits 75 (try again) if the database failed."""
    state = get_state()
    if state.settings.return_path is None:
        raise click.ClickException(
            "CONFIRM_RETURN_PATH is not set: without the tagged return path a"
            " bounce's recipient cannot be trusted. Set it, and route"
            " bounces+*@ its domain here."
        )
    app = current_app
    keys = [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), app.config["SECRET_KEY"]]
    return_path = ReturnPath.of(state.settings.return_path, keys)
    outcomes: collections.Counter[str] = collections.Counter()

    def take(raw: bytes) -> bool:
        reading = dsn.read(raw, return_path, recipient)
        outcomes[reading.outcome] += 1
        if reading.event is None:
            return True
        try:
            feedback.apply(state, reading.event, source="smtp")
        except Exception as e:  # the database: the MTA or the next run retries
            state.db.session.rollback()
            click.echo(f"Could not record a bounce: {type(e).__name__}.", err=True)
            outcomes["failed"] += 1
            return False
        outcomes["hard" if reading.event.permanent else "soft"] += 1
        return True

    if maildir is None:
        ok = take(sys.stdin.buffer.read(10 * 1024 * 1024))
    else:
        ok = True
        box = mailbox.Maildir(maildir, factory=None, create=False)
        for key in list(box.iterkeys()):
            message = box.get_message(key)
            if message.get_subdir() != "new":
                continue
            if take(box.get_bytes(key)):
                message.set_subdir("cur")
                message.add_flag("S")
                box[key] = message
            else:
                ok = False
    read = sum(outcomes[o] for o in ("bounce", "not_a_dsn", "unverified", "delivered"))
    click.echo(
        f"{read} message(s): {outcomes['hard']} hard bounce(s),"
        f" {outcomes['soft']} soft,"
        f" {outcomes['unverified']} without a valid tag, {outcomes['not_a_dsn']}"
        " not a DSN."
    )
    if not ok:
        raise SystemExit(EX_TEMPFAIL)
