"""Alembic environment for the history store (async engines from ``server.history.engine``).

``upgrade_database`` passes its own connection in ``config.attributes["connection"]``;
the ``alembic`` command line (``-c server/history/alembic.ini``) gets the URL from
``sqlalchemy.url`` or ``$SIGNALPUSH_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from server.history.engine import create_engine
from server.history.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = os.environ.get("SIGNALPUSH_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or SIGNALPUSH_DATABASE_URL")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
    else:
        asyncio.run(_run_with_own_engine(_url()))


_main()
