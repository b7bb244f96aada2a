"""Alembic environment: runs inside the Flask app, on its engine and metadata."""
import logging

from alembic import context
from flask import current_app

from app.audit.search_index import include_object  # the search index (0015) is not in the models

config = context.config
logger = logging.getLogger("alembic.env")


def _db():
    return current_app.extensions["migrate"].db


def run_migrations_offline():
    """Write SQL for the configured URL without a connection."""
    url = _db().engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=_db().metadata, literal_binds=True, render_as_batch=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Apply migrations on the app's engine."""

    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.setdefault("include_object", include_object)
    with _db().engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # a batch change copies and drops a table: with foreign keys on, the drop cascades to its children
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # the pragma is a no-op inside a transaction: close the one it began
        try:
            context.configure(connection=connection, target_metadata=_db().metadata, **conf_args)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
