"""Claims every labbot process sees: "this key is taken until then", kept in the database.

Used where a promise must hold across replicas and restarts:

- replay protection: a signed Slack request is acted on once, whichever replica it reaches (its signature is
  claimed until Slack's five-minute window for its timestamp has passed);
- delivery de-duplication: a retried event or a repeated click (same event or trigger id) runs once;
- rate limits: an on-demand health check of a lab at most once per interval.

A claim is one row keyed by the SHA-256 of the key (so keys of any length are bounded), taken by an INSERT that
the primary key makes atomic on SQLite and PostgreSQL alike. Expired rows are taken over, and pruned.

``serialize_lab_creates`` is the other cross-process guard here: a lock row that makes "count the live labs,
then insert one" atomic, so quotas hold under concurrent creates.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from sqlalchemy import Index, String, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from services.db import Base, UTCDateTime, utcnow

log = logging.getLogger(__name__)

LAB_CREATE_LOCK = "lab_create"


class Claim(Base):
    """One claimed key (hashed) and until when it stays claimed."""

    __tablename__ = "claims"
    __table_args__ = (Index("ix_claims_expires_at", "expires_at"),)

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lock(Base):
    """A named row that writers update first, to serialize a read-then-write across processes."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def claim(sessions: async_sessionmaker[AsyncSession], key: str, *, until: datetime,
                now: datetime | None = None) -> bool:
    """Take ``key`` until ``until``; False when another claim on it has not expired yet."""
    now = now or utcnow()
    kind = key.split(":", 1)[0][:16]
    digest = _hash(key)
    try:
        async with sessions() as session, session.begin():
            await session.execute(insert(Claim).values(key_hash=digest, kind=kind, expires_at=until))
        return True
    except IntegrityError:
        pass
    # Taken before: take it over only if that claim has expired (one UPDATE, so only one taker wins).
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(Claim).where(Claim.key_hash == digest, Claim.expires_at <= now).values(expires_at=until))
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def prune(sessions: async_sessionmaker[AsyncSession], *, now: datetime | None = None) -> int:
    """Delete expired claims; how many were removed."""
    async with sessions() as session, session.begin():
        result = await session.execute(delete(Claim).where(Claim.expires_at <= (now or utcnow())))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def count(sessions: async_sessionmaker[AsyncSession]) -> int:
    """How many claims are stored (expired or not): what pruning keeps bounded."""
    from sqlalchemy import func, select

    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Claim)) or 0)


async def serialize_lab_creates(*, session: AsyncSession) -> None:
    """Take the lab-create lock for the rest of ``session``'s transaction (call it first in the transaction).

    An UPDATE of one known row: PostgreSQL holds the row lock until commit, and on SQLite the first write of a
    transaction takes the database's write lock (waiting out ``busy_timeout``), so a quota count made after
    this call cannot be overtaken by another create before this one commits.
    """
    await session.execute(update(Lock).where(Lock.name == LAB_CREATE_LOCK).values(taken_at=utcnow()))
