"""Teams and their access grants (admins only)."""
from flask import Blueprint, render_template

from app.access import admin_required

bp = Blueprint("teams", __name__, url_prefix="/teams")


@bp.get("/")
@admin_required
def index():
    """List the teams, their members and grants."""
    return render_template("teams/index.html")
