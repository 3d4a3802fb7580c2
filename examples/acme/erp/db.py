"""The ERP's SQLite database: created and seeded on first use, reset back to the seed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, select
from sqlalchemy.orm import Session

from examples.acme.erp.models import Base, Vendor
from examples.acme.erp.seed import seed as seed_world


class ErpDatabase:
    """One ERP database file. ``reset()`` puts it back to the world of ``seed``."""

    def __init__(self, path: str | Path, *, seed: int = 0) -> None:
        self.path = Path(path)
        self.seed = seed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"check_same_thread": False}
        )
        event.listen(self.engine, "connect", _enable_foreign_keys)
        # one writer at a time: check-then-insert rules (one payment per invoice, the
        # idempotency record) must not interleave between the server's worker threads
        self.write_lock = threading.RLock()
        Base.metadata.create_all(self.engine)
        with self.session() as session:
            if not session.scalar(select(func.count()).select_from(Vendor)):
                seed_world(session, seed=seed)
                session.commit()

    def session(self) -> Session:
        """A new session; the caller commits."""
        return Session(self.engine, expire_on_commit=False)

    def reset(self) -> None:
        """Delete every row and seed again, in one transaction."""
        with self.write_lock, self.session() as session:
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(delete(table))
            seed_world(session, seed=self.seed)
            session.commit()

    def dispose(self) -> None:
        """Close pooled connections (the database stays usable; it reconnects on demand)."""
        self.engine.dispose()


def _enable_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
