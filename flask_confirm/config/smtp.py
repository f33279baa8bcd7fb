"""The checks of the keys that make SMTP mail land: the DKIM key
(:data:`CONFIRM_DKIM_DOMAIN`, :data:`CONFIRM_DKIM_SELECTOR`,
:data:`CONFIRM_DKIM_PRIVATE_KEY`) and the envelope sender
(:data:`CONFIRM_RETURN_PATH`).

:func:`.load` runs them at ``init_app``, so that a key that cannot sign fails
on start-up rather than on the first mail; the SMTP sender, which is made
from the app alone, runs them again to get the same values. A private key
is never repeated in an error message or a log line, nor kept in a
``repr``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing as t

from ..errors import ConfigError
from .keys import Keys

#: The three DKIM keys, all set or none.
DKIM_KEYS = (Keys.DKIM_DOMAIN, Keys.DKIM_SELECTOR, Keys.DKIM_PRIVATE_KEY)

#: Shorter RSA keys are refused by verifiers (RFC 8301: at least 1024 bits;
#: 2048 is what providers ask for).
MIN_KEY_BITS = 1024

#: A dot-atom local part (RFC 5322) without "+", which separates the base
#: from the tag in the envelope sender.
_LOCAL_PART = re.compile(
    r"[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*/=?^_`{|}~-]+)*"
)
#: One DNS label or more, as a selector is (RFC 6376, section 3.1).
_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


@dataclasses.dataclass(frozen=True)
class DKIMKey:
    """What the SMTP sender signs with. Internal."""

    #: The signing domain (``d=``), in its ASCII (IDNA) form.
    domain: str
    #: The selector (``s=``): the key's record is
    #: ``<selector>._domainkey.<domain>``.
    selector: str
    #: The RSA private key, PEM, ``\\n`` line ends (what dkimpy reads).
    private_key: bytes = dataclasses.field(repr=False)


def dkim_key(config: t.Mapping[str, t.Any]) -> DKIMKey | None:
    """The DKIM key the three ``CONFIRM_DKIM_*`` keys describe, or ``None``
    when none is set.

    :raises ConfigError: only some are set, or one cannot work; the message
        never holds the private key.
    """
    given = [key for key in DKIM_KEYS if config.get(key) not in (None, "")]
    if not given:
        return None
    missing = [key for key in DKIM_KEYS if key not in given]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not"
            f" set: DKIM signing needs {', '.join(DKIM_KEYS)} together. Set"
            f" {'it' if len(missing) == 1 else 'them'} too, or unset"
            f" {' and '.join(given)} to send unsigned mail."
        )
    return DKIMKey(
        domain=_domain(config[Keys.DKIM_DOMAIN]),
        selector=_selector(config[Keys.DKIM_SELECTOR]),
        private_key=_private_key(config[Keys.DKIM_PRIVATE_KEY]),
    )


def return_path(config: t.Mapping[str, t.Any]) -> str | None:
    """The base address of :data:`CONFIRM_RETURN_PATH`, ``local@domain``
    with the domain in lower-case ASCII (IDNA), or ``None`` when unset.

    :raises ConfigError: it is not one such address.
    """
    value = config.get(Keys.RETURN_PATH)
    if value is None or value == "":
        return None
    problem = (
        f"{Keys.RETURN_PATH} must be the base address bounces go to, such as"
        " 'bounces@example.com': a bare address (no name, no angle brackets)"
        " whose part before the @ is ASCII without '+', since each mail's tag"
        f" goes after one; or None to use the From address. Got {value!r}."
    )
    if not isinstance(value, str):
        raise ConfigError(problem)
    local, at, domain = value.strip().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or "+" in local:
        raise ConfigError(problem)
    try:
        return f"{local}@{_ascii_domain(domain)}"
    except ValueError:
        raise ConfigError(problem) from None


def _domain(value: t.Any) -> str:
    try:
        if not isinstance(value, str):
            raise ValueError
        return _ascii_domain(value)
    except ValueError:
        raise ConfigError(
            f"{Keys.DKIM_DOMAIN} must be the domain that signs, such as"
            f" 'example.com' (usually the From address's), not {value!r}."
        ) from None


def _ascii_domain(domain: str) -> str:
    """``domain`` in lower-case ASCII (IDNA), checked to be a host name.

    :raises ValueError: it is not one.
    """
    domain = domain.strip().rstrip(".")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")  # UnicodeError: ValueError
    if not _SELECTOR.fullmatch(domain) or ("." not in domain and domain != "localhost"):
        raise ValueError(domain)
    return domain.lower()


def _selector(value: t.Any) -> str:
    if not isinstance(value, str) or not _SELECTOR.fullmatch(value):
        raise ConfigError(
            f"{Keys.DKIM_SELECTOR} must be the selector of the key's DNS record"
            " (the 'mail' of mail._domainkey.example.com): letters, digits,"
            f" hyphens and dots; got {value!r}."
        )
    return value


def _private_key(value: t.Any) -> bytes:
    """The PEM of the RSA key ``value`` is (PEM text) or names (a file),
    checked to be one that dkimpy can sign with."""
    key = Keys.DKIM_PRIVATE_KEY
    if isinstance(value, str) and "-----BEGIN" in value:
        pem = value.encode("ascii", "replace")
    elif isinstance(value, bytes) and b"-----BEGIN" in value:
        pem = value
    elif isinstance(value, (str, os.PathLike)):
        try:
            with open(value.strip() if isinstance(value, str) else value, "rb") as f:
                pem = f.read()
        except OSError as e:
            # Not the value itself: it may be key material without its
            # BEGIN line, pasted where a path was meant.
            raise ConfigError(
                f"{key} is not PEM text (-----BEGIN PRIVATE KEY----- ...) and"
                f" no file of that name can be read ({e.strerror or 'error'})."
                " Give the PEM of the RSA private key, or the path of its file."
            ) from None
    else:
        raise ConfigError(
            f"{key} must be the PEM text of an RSA private key, or the path of"
            f" its file; got a {type(value).__name__}."
        )
    try:
        import dkim.crypto
    except ImportError:
        raise ConfigError(
            f"{', '.join(DKIM_KEYS)} need dkimpy: install 'flask-confirm[smtp]'."
        ) from None
    pem = pem.replace(b"\r\n", b"\n").strip() + b"\n"
    try:
        parsed = dkim.crypto.parse_pem_private_key(pem)
    except Exception:
        # dkimpy's message may quote what it could not parse: never shown.
        raise ConfigError(
            f"{key} does not hold an RSA private key that can sign: give an"
            " unencrypted RSA key in PEM (PKCS#1 'BEGIN RSA PRIVATE KEY' or"
            " PKCS#8 'BEGIN PRIVATE KEY'), as 'openssl genrsa 2048' writes it."
        ) from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_KEY_BITS:
        raise ConfigError(
            f"{key} is an RSA key of {bits} bits, which verifiers refuse (at least"
            f" {MIN_KEY_BITS}): make a key of 2048 bits."
        )
    return pem
