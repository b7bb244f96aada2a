"""Log in, log out, change password, second factor, single sign-on, users."""


def init_app(app):
    """Wire auth into app: the log-in, second-factor, users and single sign-on pages, and the users/oidc commands."""
    # Imported here, not at the top: importing the package (for its models) must not pull in its views.
    from .cli import oidc_cli, users_cli
    from .oidc_views import bp as oidc_bp
    from .totp_views import bp as twofactor_bp
    from .users import bp as users_bp
    from .views import bp as auth_bp

    for blueprint in (auth_bp, twofactor_bp, users_bp, oidc_bp):  # single sign-on answers 404 without OIDC_ISSUER
        app.register_blueprint(blueprint)
    app.cli.add_command(users_cli)
    app.cli.add_command(oidc_cli)
