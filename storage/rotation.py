"""Re-encrypt every stored secret under the current first key, in batches, while the app serves.

Safe to interrupt and re-run: values already under the current key are skipped, each batch
commits on its own, and every write is a compare-and-swap on the old ciphertext, so a value the
running app changed in the meantime (already under the new key) is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update

from storage.crypto import Cipher
from storage.db import Database
from storage.models import Base, encrypted_columns


@dataclass
class RotationReport:
    scanned: int = 0
    rotated: int = 0
    skipped_current: int = 0
    changed_meanwhile: int = 0
    per_column: dict[str, int] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]  # (table.column, rows scanned so far, rotated so far)


def _rotate_column(
    *,
    db: Database,
    cipher: Cipher,
    model: type[Base],
    attr: str,
    batch_size: int,
    report: RotationReport,
    progress: Progress | None,
) -> None:
    column = getattr(model, attr)
    pk = model.id  # type: ignore[attr-defined]
    label = f"{model.__tablename__}.{attr}"
    last_id = 0
    rotated_here = 0
    while True:
        with db.session() as session:
            rows = session.execute(
                select(pk, column).where(pk > last_id, column.is_not(None)).order_by(pk).limit(batch_size)
            ).all()
            if not rows:
                break
            for row_id, token in rows:
                report.scanned += 1
                if cipher.is_current(token):
                    report.skipped_current += 1
                    continue
                result = session.execute(
                    update(model).where(pk == row_id, column == token).values({attr: cipher.rotate(token)})
                )
                if result.rowcount:  # type: ignore[attr-defined]
                    report.rotated += 1
                    rotated_here += 1
                else:
                    report.changed_meanwhile += 1
            last_id = rows[-1][0]
        if progress:
            progress(label, report.scanned, report.rotated)
    report.per_column[label] = rotated_here


def rotate_keys(
    db: Database, cipher: Cipher, *, batch_size: int = 500, progress: Progress | None = None
) -> RotationReport:
    report = RotationReport()
    for model, attr in encrypted_columns():
        _rotate_column(
            db=db,
            cipher=cipher,
            model=model,
            attr=attr,
            batch_size=batch_size,
            report=report,
            progress=progress,
        )
    return report
