"""Teams and the grants that share devices with them (the rule itself is app.access)."""


def init_app(app):
    """Wire teams into app: the admins' teams page."""
    from .views import bp

    app.register_blueprint(bp)
