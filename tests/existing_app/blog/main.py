from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from flask_confirm import confirmed_required

from .extensions import db

bp = Blueprint("main", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return render_template("index.html", title="Home")


@bp.route("/settings", methods=["GET", "POST"])
@login_required
@confirmed_required
def settings():  # type: ignore[no-untyped-def]
    """A page that both shows (GET) and posts (POST) for confirmed users."""
    if request.method == "POST":
        current_user.username = request.form["username"]
        db.session.commit()
        flash("Settings saved.")
        return redirect(url_for("main.settings"))
    return render_template("settings.html", title="Settings")
