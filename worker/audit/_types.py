"""Column types whose stored text is exactly what the chain hash covers.

JSON is stored as canonical JSON text and timestamps as ``iso_utc`` text, so that a row
reads back identical on SQLite and Postgres and its hash can be recomputed from what is
stored (a ``jsonb`` column would reorder keys and a ``timestamptz`` would round).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from worker.audit.chain import canonical_json, iso_utc, parse_iso_utc


class CanonicalJSON(TypeDecorator[Any]):
    """Any JSON value, stored as canonical JSON text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else canonical_json(value).decode("utf-8")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


class UtcTimestamp(TypeDecorator[datetime]):
    """An aware datetime, stored as ISO-8601 UTC text with microseconds."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else iso_utc(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        return None if value is None else parse_iso_utc(value)
