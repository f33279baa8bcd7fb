"""Configuration is checked at ``init_app``, with errors that name the key."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from conftest import DKIMTestKey
from flask_confirm import ConfigError
from flask_confirm import Confirm
from flask_confirm import ConfirmableMixin
from flask_confirm.config import Keys
from testapp import BASE_CONFIG
from testapp import create_app


def test_defaults_are_filled_in() -> None:
    app = create_app()
    assert app.config[Keys.REDIS_URL] == "redis://localhost:6379/0"
    assert app.config[Keys.QUEUE] == "confirm"
    assert app.config[Keys.TOKEN_MAX_AGE] == 86400
    assert app.config[Keys.URL_PREFIX] == "/confirm"
    assert app.config[Keys.REDIRECT_URL] == "/"
    assert app.config[Keys.ON_GET] is False
    assert app.config[Keys.DASHBOARD_URL] == "/rq"
    assert app.config[Keys.FAILED_JOB_TTL] == 7 * 86400


@pytest.mark.parametrize(
    ("external_url", "site_name", "expected"),
    [
        ("https://app.example.test", None, "app.example.test"),
        ("https://www.Example.com:8443/app", None, "example.com"),
        ("https://xn--bcher-kva.example/", None, "bücher.example"),
        ("https://app.example.test", "  Example Widgets ", "Example Widgets"),
    ],
)
def test_site_name_defaults_to_the_external_host(
    external_url: str, site_name: str | None, expected: str
) -> None:
    """The mails name the site: by CONFIRM_SITE_NAME, else by the host its
    links point to, as a reader would type it."""
    app = create_app(**{Keys.EXTERNAL_URL: external_url, Keys.SITE_NAME: site_name})
    with app.app_context():
        assert app.extensions["confirm"]._get_state().settings.site_name == expected


@pytest.mark.parametrize(("testing", "expected"), [(True, False), (False, True)])
def test_async_defaults_to_not_testing(testing: bool, expected: bool) -> None:
    app = create_app(TESTING=testing)
    assert app.config[Keys.ASYNC] is expected


@pytest.mark.parametrize(
    ("config", "key", "fix"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY", "secrets.token_hex"),
        ({Keys.SENDER: "carrier-pigeon"}, Keys.SENDER, "'console'"),
        ({Keys.SENDER: 42}, Keys.SENDER, "'smtp'"),
        ({Keys.SENDER: "no.such.module.Sender"}, Keys.SENDER, "cannot be imported"),
        ({Keys.SENDER: "json.dumps"}, Keys.SENDER, "not a class"),
        ({Keys.SENDER: "builtins.object"}, Keys.SENDER, "accept the app"),
        ({Keys.SENDER: "logging.Logger"}, Keys.SENDER, "Sender protocol"),
        (
            {Keys.SENDER: "smtp", Keys.MAIL_FROM: None},
            Keys.MAIL_FROM,
            "MAIL_DEFAULT_SENDER",
        ),
        ({Keys.EXTERNAL_URL: None}, Keys.EXTERNAL_URL, "https://example.com"),
        ({Keys.EXTERNAL_URL: "example.com"}, Keys.EXTERNAL_URL, "absolute"),
        ({Keys.EXTERNAL_URL: "https://x.test/?a=1"}, Keys.EXTERNAL_URL, "query"),
        ({Keys.TOKEN_MAX_AGE: 0}, Keys.TOKEN_MAX_AGE, "positive"),
        ({Keys.TOKEN_MAX_AGE: "1 day"}, Keys.TOKEN_MAX_AGE, "positive"),
        ({Keys.URL_PREFIX: "confirm"}, Keys.URL_PREFIX, "starting with '/'"),
        ({Keys.DASHBOARD_URL: "/"}, Keys.DASHBOARD_URL, "None"),
        ({Keys.DASHBOARD_ORIGINS: "*"}, Keys.DASHBOARD_ORIGINS, "admin.example.com"),
        ({Keys.DASHBOARD_ORIGINS: 42}, Keys.DASHBOARD_ORIGINS, "list of origins"),
        ({Keys.DASHBOARD_ORIGINS: [None]}, Keys.DASHBOARD_ORIGINS, "None is not"),
        (
            {Keys.DASHBOARD_ORIGINS: ["https://ops.example.com/rq"]},
            Keys.DASHBOARD_ORIGINS,
            "scheme, host and port",
        ),
        (
            {Keys.DASHBOARD_ORIGINS: ["ops.example.com"]},
            Keys.DASHBOARD_ORIGINS,
            "'ops.example.com' is not one",
        ),
        (
            {Keys.DASHBOARD_ORIGINS: ["ftp://ops.example.com"]},
            Keys.DASHBOARD_ORIGINS,
            "is not one",
        ),
        (
            {Keys.DASHBOARD_ORIGINS: ["https://u:p@ops.example.com"]},
            Keys.DASHBOARD_ORIGINS,
            "is not one",
        ),
        (
            {Keys.DASHBOARD_ORIGINS: ["https://ops.example.com:99999"]},
            Keys.DASHBOARD_ORIGINS,
            "is not one",
        ),
        ({Keys.QUEUE: ""}, Keys.QUEUE, "non-empty"),
        ({Keys.SITE_NAME: ""}, Keys.SITE_NAME, "None for the host"),
        ({Keys.SITE_NAME: 42}, Keys.SITE_NAME, "such as 'Example'"),
        ({Keys.SITE_NAME: "Example\nBcc: x"}, Keys.SITE_NAME, "line break"),
        ({Keys.MESSAGES: "Welcome"}, Keys.MESSAGES, "'password_reset'"),
        ({Keys.MESSAGES: {"welcome": {}}}, Keys.MESSAGES, "'email_change'"),
        (
            {Keys.MESSAGES: {"confirm": {"subjct": "Hi"}}},
            Keys.MESSAGES,
            "'subject' and/or 'sender'",
        ),
        ({Keys.MESSAGES: {"confirm": {"subject": ""}}}, Keys.MESSAGES, "non-empty"),
        ({Keys.PASSWORD_RESET_MAX_AGE: 0}, Keys.PASSWORD_RESET_MAX_AGE, "positive"),
        ({Keys.FAILED_JOB_TTL: 0}, Keys.FAILED_JOB_TTL, "positive"),
        ({Keys.FAILED_JOB_TTL: -1}, Keys.FAILED_JOB_TTL, "positive"),
        ({Keys.FAILED_JOB_TTL: None}, Keys.FAILED_JOB_TTL, "positive"),
        ({Keys.FAILED_JOB_TTL: "7 days"}, Keys.FAILED_JOB_TTL, "positive"),
        ({Keys.FAILED_JOB_TTL: True}, Keys.FAILED_JOB_TTL, "positive"),
        ({Keys.PASSWORD_MIN_LENGTH: 0}, Keys.PASSWORD_MIN_LENGTH, ">= 1"),
        (
            {Keys.PASSWORD_RESET: True, Keys.PASSWORD_HASH_ATTRIBUTE: "pw"},
            Keys.PASSWORD_HASH_ATTRIBUTE,
            "name of the column",
        ),
    ],
)
def test_bad_config_names_key_and_fix(
    config: dict[str, t.Any], key: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(**config)
    assert key in str(info.value)
    assert fix in str(info.value)


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ((), ()),
        ("https://ops.example.com", ("https://ops.example.com",)),
        (
            ["HTTPS://Ops.Example.com:443/", "http://127.0.0.1:8080"],
            ("https://ops.example.com", "http://127.0.0.1:8080"),
        ),
        (["http://[::1]:5000"], ("http://[::1]:5000",)),
        (["https://bücher.example"], ("https://xn--bcher-kva.example",)),
    ],
)
def test_dashboard_origins_are_kept_as_browsers_write_them(
    value: t.Any, origins: tuple[str, ...]
) -> None:
    app = create_app(**{Keys.DASHBOARD_ORIGINS: value})
    settings = app.extensions["confirm"]._get_state(app).settings
    assert settings.dashboard_origins == origins


def test_mail_from_falls_back_to_flask_mail_default() -> None:
    app = create_app(
        **{Keys.MAIL_FROM: None, "MAIL_DEFAULT_SENDER": ("Ex", "ex@example.test")}
    )
    with app.app_context():
        assert (
            app.extensions["confirm"]._get_state().settings.mail_from
            == "Ex <ex@example.test>"
        )


def test_ses_without_boto3_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 is installed here; hiding it from the import system is the only way
    # to stage its absence in this process.
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(
        ConfigError, match=r"CONFIRM_SENDER = 'ses' needs boto3.*\[ses\]"
    ):
        create_app(**{Keys.SENDER: "ses"})


def test_smtp_without_flask_mail_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As above: Flask-Mail is installed, so its absence is staged.
    monkeypatch.setitem(sys.modules, "flask_mail", None)
    with pytest.raises(ConfigError, match=r"needs Flask-Mail.*\[smtp\]"):
        create_app(**{Keys.SENDER: "smtp"})


def test_dashboard_without_rq_dashboard_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rq_dashboard", None)
    with pytest.raises(ConfigError, match=r"CONFIRM_DASHBOARD_URL.*= None"):
        create_app()
    assert "rq_dashboard" not in create_app(**{Keys.DASHBOARD_URL: None}).blueprints


def test_dashboard_that_fails_to_import_says_why() -> None:
    # rq-dashboard is installed but cannot import (here: six, which it uses
    # without declaring it, is made unimportable; rq-dashboard 0.8.0 with
    # rq 2 fails the same way on pop_connection). A fresh interpreter, so
    # that rq-dashboard really is imported and fails.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["six"] = None
        from flask_confirm import ConfigError
        from testapp import create_app
        try:
            create_app()
        except ConfigError as e:
            print(e)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    message = result.stdout
    assert "CONFIRM_DASHBOARD_URL" in message, result
    assert "not installed" not in message
    assert "rq-dashboard " + importlib.metadata.version("rq-dashboard") in message
    assert "failed to import with rq " + importlib.metadata.version("rq") in message
    assert "ModuleNotFoundError" in message
    assert "six" in message
    assert "pip install --upgrade 'flask-confirm[dashboard]'" in message
    assert "= None" in message


def _bare_app() -> tuple[Flask, SQLAlchemy]:
    app = Flask(__name__)
    app.config.update(BASE_CONFIG)
    return app, SQLAlchemy(app)


def test_missing_db_or_model_is_a_config_error() -> None:
    app, _db = _bare_app()
    with pytest.raises(ConfigError, match="user_model=User"):
        Confirm().init_app(app)


def test_model_without_mixin_is_a_config_error() -> None:
    app, db = _bare_app()

    class Plain(db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320))

    with pytest.raises(ConfigError, match="ConfirmableMixin"):
        Confirm().init_app(app, db=db, user_model=Plain)


def test_model_without_email_is_a_config_error() -> None:
    app, db = _bare_app()

    class NoEmail(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)

    with pytest.raises(ConfigError, match="'email'"):
        Confirm().init_app(app, db=db, user_model=NoEmail)


@pytest.mark.parametrize(
    ("columns", "says"),
    [
        (
            lambda db: {
                "org": db.Column(db.Integer, primary_key=True),
                "number": db.Column(db.Integer, primary_key=True),
            },
            "primary key of 2 columns (org, number)",
        ),
        (
            lambda db: {"id": db.Column(db.Numeric(10, 0), primary_key=True)},
            "primary key 'id' is Numeric(precision=10, scale=0)",
        ),
        (
            lambda db: {"id": db.Column(db.Date, primary_key=True)},
            "primary key 'id' is Date()",
        ),
        (
            lambda db: {"id": db.Column(db.LargeBinary(16), primary_key=True)},
            "primary key 'id' is LargeBinary(length=16)",
        ),
    ],
)
def test_keys_jobs_and_tokens_cannot_carry_are_refused(
    columns: t.Callable[[SQLAlchemy], dict[str, t.Any]], says: str
) -> None:
    app, db = _bare_app()
    body = {"email": db.Column(db.String(320)), **columns(db)}
    model = type("Member", (ConfirmableMixin, db.Model), body)
    with pytest.raises(ConfigError) as info:
        Confirm().init_app(app, db=db, user_model=model)
    assert says in str(info.value)
    assert "user_model=Member" in str(info.value)
    assert "Integer, a String or a Uuid" in str(info.value)


@pytest.mark.parametrize(
    "key",
    [
        lambda db: db.Column(db.Integer, primary_key=True),
        lambda db: db.Column(db.BigInteger, primary_key=True),
        lambda db: db.Column(db.String(40), primary_key=True),
        lambda db: db.Column(db.Uuid, primary_key=True),
        lambda db: db.Column(db.Uuid(as_uuid=False), primary_key=True),
    ],
)
def test_keys_jobs_and_tokens_can_carry_are_accepted(
    key: t.Callable[[SQLAlchemy], t.Any],
) -> None:
    app, db = _bare_app()
    body = {"id": key(db), "email": db.Column(db.String(320))}
    model = type("Member", (ConfirmableMixin, db.Model), body)
    Confirm().init_app(app, db=db, user_model=model)


def test_email_attribute_is_configurable_and_checked() -> None:
    app, db = _bare_app()
    app.config[Keys.EMAIL_ATTRIBUTE] = "address"

    class Member(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320))  # not the one named by the key

    with pytest.raises(ConfigError) as info:
        Confirm().init_app(app, db=db, user_model=Member)
    assert "no mapped column 'address'" in str(info.value)
    assert Keys.EMAIL_ATTRIBUTE in str(info.value)


@pytest.mark.parametrize(
    ("type_", "refused"),
    [
        (lambda db: db.String(255), "too short"),
        (lambda db: db.Unicode(319), "too short"),
        (lambda db: db.Integer(), "not a String"),
        (lambda db: db.String(320), None),
        (lambda db: db.String(1000), None),
        (lambda db: db.String(), None),
        (lambda db: db.Text(), None),
    ],
)
def test_email_column_must_hold_any_address(
    type_: t.Callable[[SQLAlchemy], t.Any], refused: str | None
) -> None:
    app, db = _bare_app()
    app.config[Keys.EMAIL_ATTRIBUTE] = "address"
    body = {
        "id": db.Column(db.Integer, primary_key=True),
        # A column named otherwise than its attribute: both are named.
        "address": db.Column("mail", type_(db)),
    }
    model = type("Member", (ConfirmableMixin, db.Model), body)
    if refused is None:
        Confirm().init_app(app, db=db, user_model=model)
        return
    with pytest.raises(ConfigError) as info:
        Confirm().init_app(app, db=db, user_model=model)
    message = str(info.value)
    assert "user_model=Member.address" in message
    assert "column member.mail" in message
    assert refused in message
    assert "320 characters (RFC 5321)" in message
    assert "db.String(320)" in message


def test_password_reset_needs_a_setter() -> None:
    app, db = _bare_app()
    app.config[Keys.PASSWORD_RESET] = True

    class NoSetter(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320))
        password_hash = db.Column(db.String(200))

    with pytest.raises(ConfigError) as info:
        Confirm().init_app(app, db=db, user_model=NoSetter)
    assert Keys.PASSWORD_RESET in str(info.value)
    assert "set_password(password)" in str(info.value)
    assert "password_setter=" in str(info.value)
    # A setter given to the extension is enough.
    Confirm(password_setter=lambda user, password: None).init_app(
        app, db=db, user_model=NoSetter
    )


def test_second_init_app_is_refused() -> None:
    app = create_app()
    models = app.extensions["test_models"]
    with pytest.raises(RuntimeError, match="already registered"):
        Confirm().init_app(app, db=models["db"], user_model=models["User"])


def test_one_instance_serves_two_apps() -> None:
    confirm = Confirm()
    apps = []
    for prefix in ("/one", "/two"):
        app, db = _bare_app()
        app.config[Keys.URL_PREFIX] = prefix

        class User(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
            id = db.Column(db.Integer, primary_key=True)
            email = db.Column(db.String(320))

        confirm.init_app(app, db=db, user_model=User)
        apps.append(app)
    for app, prefix in zip(apps, ("/one", "/two"), strict=True):
        with app.app_context():
            assert confirm._get_state().settings.url_prefix == prefix
        assert any(r.rule.startswith(f"{prefix}/") for r in app.url_map.iter_rules())


def test_state_outside_registered_app_explains() -> None:
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match="init_app"):
        Confirm().queue  # noqa: B018


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:6379", "does not start with redis://"),
        ("http://127.0.0.1:6379/0", "does not start with redis://"),
        ("redis://127.0.0.1:notaport/0", "cannot be parsed"),
        ("redis://127.0.0.1:6379/zero", "must be a number"),
        # A password with an unescaped "/", "?" or "#" ends up after the host,
        # where nothing could mask it when printed.
        ("redis://:pass/w0rd@127.0.0.1:6379/0", "percent-encode"),
        ("redis://:pass?w0rd@127.0.0.1:6379/0", "percent-encode"),
        ("redis://:pass#w0rd@127.0.0.1:6379/0", "percent-encode"),
        ("redis+sentinel://127.0.0.1:26379", "names no service"),
        ("redis+sentinel://127.0.0.1:26379/", "names no service"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/zero", "/service_name/db"),
        ("redis+sentinel://127.0.0.1:26379/a/0/b", "/service_name/db"),
        ("redis+sentinel://127.0.0.1:port/mymaster", "host:port"),
        ("redis+sentinel://h1:26379,,h2:26379/mymaster", "host:port"),
        ("redis+sentinel://h1:26379/mymaster?socket_timeout=1", "'socket_timeout'"),
    ],
)
def test_bad_redis_url_is_a_config_error(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_app(**{Keys.REDIS_URL: url})
    message = str(info.value)
    assert Keys.REDIS_URL in message and reason in message
    assert "redis+sentinel://[[user]:password@]host:port" in message  # the forms
    assert "w0rd" not in message and url not in message


@pytest.mark.parametrize("value", [None, "", 6379, ["redis://127.0.0.1"]])
def test_redis_url_of_the_wrong_type_is_a_config_error(value: t.Any) -> None:
    with pytest.raises(ConfigError, match=rf"{Keys.REDIS_URL} must be a Redis URL"):
        create_app(**{Keys.REDIS_URL: value})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:p%40ss%2Fw0rd@127.0.0.1/1",
        "redis://user:pw@127.0.0.1:6379",
        "rediss://127.0.0.1:6380/0",
        "unix:///run/redis/redis.sock?db=2",
        "redis://127.0.0.1:6379/0?password=pw",
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis+sentinel://:pw@h1:26379,h2:26380,h3/mymaster/3",
        "redis+sentinel://h1:26379/mymaster/0?sentinel_password=spw",
    ],
)
def test_good_redis_urls_are_accepted(url: str) -> None:
    app = create_app(**{Keys.REDIS_URL: url})  # nothing connects yet
    with app.app_context():
        assert app.extensions["confirm"]._get_state().settings.redis_url == url


def test_redis_client_must_be_a_redis_client() -> None:
    import redis

    app, db = _bare_app()

    class User(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
        id = db.Column(db.Integer, primary_key=True)
        email = db.Column(db.String(320))

    with pytest.raises(ConfigError, match=r"redis= must be a redis\.Redis client"):
        Confirm(app, db=db, user_model=User, redis="redis://x")  # type: ignore[arg-type]
    # RQ stores pickled jobs: a client that decodes responses cannot read them.
    decoding = redis.Redis(decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        Confirm().init_app(app, db=db, user_model=User, redis=decoding)
    assert "confirm" not in app.extensions


# -- SMTP: DKIM and the Return-Path -------------------------------------------


def smtp_settings(**config: t.Any) -> t.Any:
    app = create_app(**{Keys.SENDER: "smtp", **config})
    return app.extensions["confirm"]._get_state(app).settings


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ([Keys.DKIM_DOMAIN], [Keys.DKIM_SELECTOR, Keys.DKIM_PRIVATE_KEY]),
        ([Keys.DKIM_PRIVATE_KEY], [Keys.DKIM_DOMAIN, Keys.DKIM_SELECTOR]),
        ([Keys.DKIM_DOMAIN, Keys.DKIM_SELECTOR], [Keys.DKIM_PRIVATE_KEY]),
    ],
)
def test_dkim_keys_all_or_none(
    dkim_test_key: DKIMTestKey, given: list[str], missing: list[str]
) -> None:
    config = {key: dkim_test_key.config[key] for key in given}
    with pytest.raises(ConfigError) as info:
        create_app(**{Keys.SENDER: "smtp", **config})
    message = str(info.value)
    assert all(f"{key} " in message.split("not set")[0] for key in missing)
    assert all(key not in message.split("not set")[0] for key in given)
    assert dkim_test_key.private_pem[40:80] not in message


def test_no_dkim_keys_no_signing() -> None:
    assert smtp_settings().dkim is None
    assert smtp_settings(**{Keys.DKIM_DOMAIN: ""}).dkim is None


def test_dkim_key_as_pem_text_bytes_or_file(
    dkim_test_key: DKIMTestKey, tmp_path: Path
) -> None:
    pem = dkim_test_key.private_pem
    path = tmp_path / "dkim.pem"
    path.write_text(pem.replace("\n", "\r\n"))  # CRLF, as from Windows
    loaded = []
    for value in (pem, pem.encode(), path, str(path), f"  {path}\n"):
        settings = smtp_settings(
            **{**dkim_test_key.config, Keys.DKIM_PRIVATE_KEY: value}
        )
        loaded.append(settings.dkim.private_key)
        assert settings.dkim.domain == "example.com"
        assert settings.dkim.selector == "mail2026"
        # Neither the settings' repr nor the key's shows the private key.
        assert pem[40:80] not in repr(settings)
        assert "private_key" not in repr(settings.dkim)
    assert len(set(loaded)) == 1
    assert b"\r" not in loaded[0]


def test_dkim_domain_in_idna(dkim_test_key: DKIMTestKey) -> None:
    settings = smtp_settings(
        **{**dkim_test_key.config, Keys.DKIM_DOMAIN: "Bücher.example"}
    )
    assert settings.dkim.domain == "xn--bcher-kva.example"


BEGIN, END = "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----"


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )


@pytest.mark.parametrize(
    "value",
    [
        f"{BEGIN}\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n{END}\n",
        f"{BEGIN}\n!!!not base64 secret-key-material!!!\n{END}\n",
        "ed25519",
        "headerless",
        "/no/such/secret-key-material.pem",
        "a directory",
        42,
    ],
)
def test_dkim_key_that_does_not_load_is_a_config_error(
    dkim_test_key: DKIMTestKey,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    value: t.Any,
) -> None:
    pem = dkim_test_key.private_pem
    body = "".join(pem.splitlines()[1:-1])  # the key without its BEGIN line
    value = {
        "ed25519": _ed25519_pem(),
        "headerless": body,
        "a directory": str(tmp_path),
    }.get(value, value)
    with pytest.raises(ConfigError) as info:
        smtp_settings(**{**dkim_test_key.config, Keys.DKIM_PRIVATE_KEY: value})
    message = str(info.value)
    assert Keys.DKIM_PRIVATE_KEY in message
    # No chained exception (dkimpy's, or the OSError) carries it either.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    # Whatever was given is not repeated: it may be key material.
    for secret in ("secret-key-material", "c2VjcmV0", body[:40], body[-40:]):
        assert secret not in message
        assert secret not in caplog.text


def test_dkim_key_too_short_is_a_config_error(dkim_test_key: DKIMTestKey) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # A 512-bit key, which cryptography no longer makes: from two fixed primes.
    p = 88578024031666407903447491142587621470013181504411891263052369050367779038199
    q = 115302506243371639159105756097970366451585469378876848279485220026610084414823
    d = pow(65537, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(65537, p * q),
    )
    pem = numbers.private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match=r"512 bits.*2048") as info:
        smtp_settings(**{**dkim_test_key.config, Keys.DKIM_PRIVATE_KEY: pem})
    assert pem.decode().splitlines()[1] not in str(info.value)


def test_dkim_without_dkimpy_is_a_config_error(
    dkim_test_key: DKIMTestKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dkimpy is installed; its absence is staged, as for boto3 above.
    monkeypatch.setitem(sys.modules, "dkim", None)
    monkeypatch.setitem(sys.modules, "dkim.crypto", None)
    with pytest.raises(ConfigError, match=r"need dkimpy.*\[smtp\]"):
        smtp_settings(**dkim_test_key.config)


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        (Keys.DKIM_DOMAIN, "not a domain", "'example.com'"),
        (Keys.DKIM_DOMAIN, 42, "'example.com'"),
        (Keys.DKIM_SELECTOR, "mail/2026", "selector"),
        (Keys.DKIM_SELECTOR, ["mail"], "selector"),
    ],
)
def test_bad_dkim_domain_or_selector(
    dkim_test_key: DKIMTestKey, key: str, value: t.Any, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        smtp_settings(**{**dkim_test_key.config, key: value})
    assert key in str(info.value)
    assert fix in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("bounces@example.com", "bounces@example.com"),
        ("bounces@Example.COM", "bounces@example.com"),
        ("bounces@bücher.example", "bounces@xn--bcher-kva.example"),
        ("mail.bounces@example.com", "mail.bounces@example.com"),
    ],
)
def test_return_path_is_checked_and_kept(value: t.Any, expected: str | None) -> None:
    assert smtp_settings(**{Keys.RETURN_PATH: value}).return_path == expected


@pytest.mark.parametrize(
    "value",
    [
        "bounces",
        "bounces+x@example.com",  # the tag goes after the "+"
        "Bounces <bounces@example.com>",
        "<bounces@example.com>",
        "bouncés@example.com",
        '"b b"@example.com',
        "bounces@",
        "bounces@exa mple.com",
        42,
    ],
)
def test_bad_return_path_is_a_config_error(value: t.Any) -> None:
    with pytest.raises(ConfigError) as info:
        smtp_settings(**{Keys.RETURN_PATH: value})
    assert Keys.RETURN_PATH in str(info.value)
    assert "'bounces@example.com'" in str(info.value)
