"""Build the sdist and the wheel and check them as the package index and a new
user would see them. Run by ``scripts/dev package`` (and so by CI).

1. ``python -m build`` makes both; ``twine check --strict`` checks their
   metadata and that the README renders on the index page.
2. Both carry LICENSE, the metadata names it, and the project URLs and Python
   classifiers are there.
3. For each extra alone (none, ``smtp``, ``ses``, ``dashboard``), a fresh
   virtualenv gets the wheel with that extra and nothing else, and a smoke
   check runs ``init_app`` with that extra's sender or dashboard in it. This is
   how an undeclared dependency is caught (rq-dashboard's ``six``, which the
   ``ses`` extra's boto3 used to bring in by chance).

Exits non-zero on the first failure, saying what failed.

Usage: python scripts/check_dist.py [--keep DIR]
       python scripts/check_dist.py --smoke EXTRA   (inside a virtualenv; internal)
"""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ["", "smtp", "ses", "dashboard"]
REPOSITORY = "https://github.com/flask-confirm/flask-confirm"


class CheckFailed(Exception):
    pass


def run(*args: str | Path, cwd: Path = ROOT) -> None:
    print("+", " ".join(map(str, args)), flush=True)
    result = subprocess.run([str(a) for a in args], cwd=cwd)
    if result.returncode:
        raise CheckFailed(f"{Path(args[0]).name} exited {result.returncode}.")


def build(out: Path) -> tuple[Path, Path]:
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    return sdist, wheel


def check_metadata(metadata: email.message.Message, where: str) -> None:
    def need(condition: bool, what: str) -> None:
        if not condition:
            raise CheckFailed(f"{where}: {what}")

    need(metadata["License-Expression"] == "BSD-3-Clause", "no License-Expression")
    need("LICENSE" in metadata.get_all("License-File", []), "no License-File: LICENSE")
    urls = metadata.get_all("Project-URL", [])
    need(bool(urls), "no Project-URL")
    for url in urls:
        need(url.split(", ", 1)[1].startswith(REPOSITORY), f"Project-URL {url!r}")
    classifiers = metadata.get_all("Classifier", [])
    need(
        "Programming Language :: Python :: 3.10" in classifiers,
        "no Python version classifiers",
    )
    need(
        "](docs/" not in (metadata.get_payload() or ""), "a relative link in the README"
    )


def check_license(sdist: Path, wheel: Path) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (dist_info,) = {n.split("/")[0] for n in names if ".dist-info/" in n}
        licensed = f"{dist_info}/licenses/LICENSE"
        if licensed not in names:
            raise CheckFailed(f"{wheel.name} has no {licensed}.")
        if whl.read(licensed) != license_text:
            raise CheckFailed(f"{wheel.name}: {licensed} differs from LICENSE.")
        policy = email.policy.compat32
        metadata = email.message_from_bytes(
            whl.read(f"{dist_info}/METADATA"), policy=policy
        )
        check_metadata(metadata, wheel.name)
    with tarfile.open(sdist) as tar:
        top = sdist.name.removesuffix(".tar.gz")
        member = tar.extractfile(f"{top}/LICENSE")
        if member is None or member.read() != license_text:
            raise CheckFailed(f"{sdist.name} has no {top}/LICENSE, or another one.")
        pkg_info = tar.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        check_metadata(email.message_from_bytes(pkg_info.read()), sdist.name)
    print(f"LICENSE, its metadata, URLs, classifiers: {sdist.name}, {wheel.name}")


def check_extras(wheel: Path, work: Path) -> None:
    for extra in EXTRAS:
        name = extra or "none"
        started = time.monotonic()
        env = work / f"venv-{name}"
        # A virtualenv of its own, without the system's or this one's packages.
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
        python = env / "bin" / "python"
        spec = f"{wheel}[{extra}]" if extra else str(wheel)
        run(python, "-m", "pip", "install", "--quiet", spec)
        run(python, Path(__file__), "--smoke", name, cwd=work)
        took = time.monotonic() - started
        print(f"extra {name}: installs alone and works ({took:.0f}s)")


# -- inside the fresh virtualenv ----------------------------------------------


def smoke(extra: str) -> None:
    """``init_app`` with the extra's part in use; the others say what is missing."""
    import importlib.util

    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy

    import flask_confirm
    from flask_confirm import ConfigError
    from flask_confirm import Confirm
    from flask_confirm import ConfirmableMixin

    # The wheel installed here, not the checkout.
    assert Path(flask_confirm.__file__).is_relative_to(sys.prefix), flask_confirm

    def make(**config: object) -> tuple[Flask, Confirm]:
        app = Flask("smoke")
        app.config.update(
            SECRET_KEY="a-long-enough-secret-key-for-the-smoke-check",
            SQLALCHEMY_DATABASE_URI="sqlite://",
            CONFIRM_EXTERNAL_URL="https://app.example.test",
            CONFIRM_MAIL_FROM="no-reply@example.test",
            CONFIRM_SENDER="console",
            CONFIRM_DASHBOARD_URL=None,
        )
        app.config.update(config)
        db = SQLAlchemy(app)

        class User(ConfirmableMixin, db.Model):  # type: ignore[name-defined,misc]
            id = db.Column(db.Integer, primary_key=True)
            email = db.Column(db.String(320), unique=True, nullable=False)

        confirm = Confirm(app, db=db, user_model=User, dashboard_auth=lambda: True)
        return app, confirm

    def refused(message: str, **config: object) -> None:
        try:
            make(**config)
        except ConfigError as e:
            if message not in str(e):
                raise AssertionError(f"{config}: {e}") from e
        else:
            raise AssertionError(f"{config} should be refused without its extra.")

    if extra == "smtp":
        app, confirm = make(CONFIRM_SENDER="smtp", MAIL_SERVER="127.0.0.1")
        with app.app_context():
            assert type(confirm.sender).__name__ == "SMTPSender", confirm.sender
    elif extra == "ses":
        app, confirm = make(CONFIRM_SENDER="ses", CONFIRM_SES_REGION="eu-west-1")
        with app.app_context():
            assert type(confirm.sender).__name__ == "SESSender", confirm.sender
            # boto3 loads the sesv2 service model; nothing is sent.
            assert confirm.sender.client.meta.service_model.service_name == "sesv2"  # type: ignore[attr-defined]
    elif extra == "dashboard":
        app, confirm = make(CONFIRM_DASHBOARD_URL="/rq")
        client = app.test_client()
        for path in ("/rq/", "/rq/static/css/main.css"):
            status = client.get(path).status_code
            assert status == 200, f"GET {path}: {status}"
    else:
        make()
        assert importlib.util.find_spec("rq_dashboard") is None
        refused("rq-dashboard is not installed", CONFIRM_DASHBOARD_URL="/rq")
        refused("[smtp]", CONFIRM_SENDER="smtp")
        refused("[ses]", CONFIRM_SENDER="ses")
    print(f"smoke check for extra {extra}: init_app works")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", choices=["none", *EXTRAS[1:]])
    parser.add_argument("--keep", type=Path, help="build and test in DIR, and keep it")
    args = parser.parse_args()
    if args.smoke:
        smoke(args.smoke)
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flask-confirm-dist-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            sdist, wheel = build(work / "dist")
            check_license(sdist, wheel)
            check_extras(wheel, work)
        except CheckFailed as e:
            print(f"Packaging check failed: {e}", file=sys.stderr)
            return 1
    print(f"Packaging checks passed in {time.monotonic() - started:.0f}s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
