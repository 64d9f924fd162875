"""A plain-text dump of every table, for checks that no secret is stored in the clear."""

from __future__ import annotations

from sqlalchemy import MetaData, select

from tests.support.live import Live


def dump(live: Live) -> str:
    """Every value of every table, as text (what `pg_dump` or `.dump` would show)."""
    metadata = MetaData()
    metadata.reflect(live.services.db.engine)
    parts: list[str] = []
    with live.services.db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(select(table)):
                parts.append(" ".join(str(value) for value in row))
    return "\n".join(parts)
