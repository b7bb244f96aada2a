"""The main page: devices on one side, terminal tabs on the other."""
from flask import Blueprint, render_template
from flask_login import login_required

bp = Blueprint("terminals", __name__)


@bp.get("/")
@login_required
def index():
    """Show the device panel and the terminal tabs."""
    from app.devices.views import user_devices

    return render_template("terminals/index.html", devices=user_devices())
