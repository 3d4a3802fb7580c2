"""Alembic environment of the audit schema.

``worker.audit.upgrade(url)`` runs it programmatically with an open connection; the
``alembic`` CLI (see ``alembic.ini``) runs it with the URL from ``UMIQ_DATABASE_URL``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlmodel import SQLModel

import worker.audit.tables  # noqa: F401  (registers the audit tables on SQLModel.metadata)
from worker.audit.db import WRITE, make_engine

config = context.config
if config.config_file_name is not None:  # the alembic CLI: log as alembic.ini says
    fileConfig(config.config_file_name)
target_metadata = SQLModel.metadata


def _url() -> str:
    url = os.environ.get("UMIQ_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        from worker.settings import get_settings

        url = get_settings().resolved_database_url
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # worker.audit.upgrade: already in a locked transaction
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url(), role=None)  # migrations run with the owner's rights
    try:
        with engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                context.configure(connection=conn, target_metadata=target_metadata)
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
