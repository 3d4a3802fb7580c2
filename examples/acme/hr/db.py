"""The HR database file: created from ``schema.sql`` and seeded on first use, reset to seed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from examples.acme.hr.seed import seed as seed_world

SCHEMA = Path(__file__).with_name("schema.sql")


class HrDatabase:
    """One SQLite HR database file. No server: connectors reach it through ``url``.

    ``reset()`` empties every table — including tables others keep in it, such as the
    SQL connector's idempotency records — and seeds again, in one transaction.
    """

    def __init__(self, path: str | Path, *, seed: int = 0) -> None:
        self.path = Path(path)
        self.seed = seed
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.executescript(SCHEMA.read_text())
            if not conn.execute("SELECT count(*) FROM employee").fetchone()[0]:
                seed_world(conn, seed=seed)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the file (``sqlite:////abs/path/hr.sqlite3``)."""
        return f"sqlite:///{self.path.resolve()}"

    @contextmanager
    def connect(self, *, foreign_keys: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection (foreign keys on); commits on success, rolls back on error."""
        conn = sqlite3.connect(self.path, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def reset(self) -> None:
        """Delete every row of every table and seed again."""
        # foreign keys off: rows reference each other in every direction; the seed is sound
        with self.connect(foreign_keys=False) as conn:
            tables = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for (table,) in tables:
                conn.execute(f'DELETE FROM "{table}"')
            seed_world(conn, seed=self.seed)

    def rows(self, sql: str, *params: object) -> list[dict[str, object]]:
        """The rows of a read-only query, as dicts (for tests and checkers)."""
        with self.connect() as conn:
            return [dict(row) for row in conn.execute(sql, params)]
