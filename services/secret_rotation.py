"""``labbot secret-key rotate OLD NEW``: re-encrypt every stored secret under a new key.

Every ``*_enc`` column of every table is visited row by row, each row in its own transaction, so an interrupted
rotation leaves each row wholly under the old key or wholly under the new one. Fernet tokens are authenticated,
so which key opens a value is a fact, not a guess: running the same rotation again finishes the job, and a
value neither key opens is reported and left alone. Stop labbot while rotating (a running labbot keeps the
key it started with), then start it with the new key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import services.labs.models  # noqa: F401 - registers every table on Base.metadata
from services.crypto import SecretBox
from services.db import Base
from services.i18n import _

log = logging.getLogger(__name__)


@dataclass
class RotationReport:
    """What a rotation did, by count (never by value)."""

    rewritten: int = 0
    already_new: int = 0
    unreadable: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """A summary for the command line."""
        lines = [
            _("re-encrypted {rewritten} secrets; {already_new} were already under the new key").format(
                rewritten=self.rewritten, already_new=self.already_new
            )
        ]
        lines += [_("neither key opens {where}").format(where=where) for where in self.unreadable]
        return lines


def encrypted_columns() -> dict[Table, list[str]]:
    """Every table with ``*_enc`` columns, and those columns."""
    found: dict[Table, list[str]] = {}
    for table in Base.metadata.sorted_tables:
        columns = [c.name for c in table.columns if c.name.endswith("_enc")]
        if columns:
            found[table] = columns
    return found


async def rotate_secrets(
    sessions: async_sessionmaker[AsyncSession],
    *,
    old: SecretBox,
    new: SecretBox,
    after_row: Callable[[], None] | None = None,
) -> RotationReport:
    """Re-encrypt every stored secret that ``old`` opens under ``new`` (see the module docstring)."""
    report = RotationReport()
    for table, columns in encrypted_columns().items():
        (key,) = table.primary_key.columns
        async with sessions() as session:
            ids = list((await session.scalars(select(key).order_by(key))).all())
        for row_id in ids:
            async with sessions() as session, session.begin():
                row = (await session.execute(select(*(table.c[c] for c in columns)).where(key == row_id))).one()
                changes: dict[str, str] = {}
                for name, value in zip(columns, row, strict=True):
                    if not value:
                        continue
                    if new.is_current(value) and new.can_decrypt(value):
                        report.already_new += 1
                    elif new.can_decrypt(value):
                        changes[name] = new.encrypt(new.decrypt(value))
                    elif old.can_decrypt(value):
                        changes[name] = new.encrypt(SecretStr(old.decrypt(value).get_secret_value()))
                    else:
                        report.unreadable.append(f"{table.name}.{name} of row {row_id}")
                if changes:
                    values: dict[str, object] = dict(changes)
                    if "version" in table.c:  # keep optimistic locking honest for any process holding the row
                        values["version"] = table.c.version + 1
                    await session.execute(update(table).where(key == row_id).values(**values))
                    report.rewritten += len(changes)
            if changes and after_row is not None:
                after_row()
    log.info("secret-key rotation: %s", "; ".join(report.lines()))
    return report
