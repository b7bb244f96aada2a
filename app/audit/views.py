"""The audit viewer."""
from flask import Blueprint

bp = Blueprint("audit", __name__, url_prefix="/audit")
