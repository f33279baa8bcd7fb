"""Typo suggestions for the domains most people's addresses are at.

A confirmation link mailed to ``ada@gmial.com`` never arrives, and the bounce
counts against the sender's reputation; the person who typed it only sees
that nothing came. So the resend and reset forms answer a likely typo of a
common consumer domain with "did you mean ``ada@gmail.com``?". It is a
suggestion, never a correction: the address is used as typed. Only the
domain is looked at, and only against this list, so an address at any other
domain, a company's say, gets no suggestion. Internal.
"""

from __future__ import annotations

#: The consumer domains suggested, most used first (a tie goes to the first).
POPULAR = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "aol.com",
    "live.com",
    "msn.com",
    "me.com",
    "mac.com",
    "googlemail.com",
    "protonmail.com",
    "proton.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "yahoo.co.uk",
    "hotmail.co.uk",
    "btinternet.com",
    "yahoo.fr",
    "hotmail.fr",
    "orange.fr",
    "free.fr",
    "laposte.net",
    "libero.it",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
)

#: Real domains a small typo away from a popular one: never "corrected".
KNOWN = frozenset(
    {
        *POPULAR,
        "mail.com",
        "email.com",
        "ymail.com",
        "rocketmail.com",
        "gmx.at",
        "gmx.ch",
        "live.co.uk",
        "live.fr",
        "hotmail.de",
        "hotmail.it",
        "yahoo.de",
        "yahoo.it",
        "yahoo.es",
        "outlook.fr",
        "outlook.de",
        "t-online.de",
        "me.org",
    }
)

#: The most edits (insertions, deletions, substitutions, swaps of two
#: neighbours) between a typed domain and the one suggested.
MAX_EDITS = 2


def suggest(address: str) -> str | None:
    """``address`` with its domain replaced by the popular domain it is most
    likely a typo of (``ada@gmial.com`` → ``ada@gmail.com``; ``ada@gmail``,
    with no top-level domain, → ``ada@gmail.com``), or ``None`` when the
    domain is a known one or close to none of them."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    typed = domain.lower().rstrip(".")
    if typed in KNOWN or len(typed) < 4:
        return None
    best: tuple[int, int, str] | None = None
    for rank, candidate in enumerate(POPULAR):
        # No top-level domain typed: compare the names only.
        target = candidate if "." in typed else candidate.split(".", 1)[0]
        # A short domain allows one edit only: two edits turn most short
        # domains into another real one.
        limit = MAX_EDITS if len(target) > 6 else 1
        edits = _distance(typed, target, limit)
        if edits <= limit and (best is None or (edits, rank) < best[:2]):
            best = (edits, rank, candidate)
    if best is None or (best[0] == 0 and "." in typed):
        return None
    return f"{local}@{best[2]}"


def _distance(a: str, b: str, limit: int) -> int:
    """The optimal string alignment distance of ``a`` and ``b`` (edits, with
    a swap of neighbours counting one), or ``limit + 1`` once it exceeds
    ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]
