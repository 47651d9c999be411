"""The expiry sweep's SQL cost grows linearly with the labs it acts on: a fixed part plus a constant per lab.

Statements are counted with a SQLAlchemy ``before_cursor_execute`` listener on the runtime's engine while one
sweep runs over batches of 2, 4 and 8 labs (each batch on its own, earlier batches no longer due). An N+1
pattern (a query per lab inside a per-lab loop over all labs, a lazy load per row) would make the per-lab
increment between batches differ or exceed the bound. The 1,000-lab figure is in benchmarks/cleanup.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event

from services.labs.models import LabState
from services.scheduler.expiry import ExpirySummary, expiry_sweep
from tests.scheduler.conftest import T0, World

M = timedelta(minutes=1)
BATCHES = (2, 4, 8)
# Per lab, the claim is one transaction: read the lab, update it, insert the audit event, read its steps for the
# notice (4 statements); 6 leaves room for a dialect's extra round trip without hiding a per-lab query loop.
PER_LAB_LIMIT = 6
FIXED_LIMIT = 4  # the two selects of due labs and failed destroys


async def counted_sweep(world: World) -> tuple[int, ExpirySummary]:
    """Run one expiry sweep at T0 and count the SQL statements it sent."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = world.rt.db_engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        summary = await expiry_sweep(world.ctx, now=T0)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(statements), summary


@pytest.mark.parametrize("action", ["expire", "warn"])
async def test_statements_per_lab_are_constant(world: World, action: str) -> None:
    expires_in = -M if action == "expire" else 20 * M  # expired, or inside the 30m warning
    counts: dict[int, int] = {}
    for batch, size in enumerate(BATCHES):
        labs = [f"b{batch}-{i}" for i in range(size)]
        for name in labs:
            await world.add_lab(name, LabState.READY, expires_in=expires_in)
        counts[size], summary = await counted_sweep(world)
        acted = summary.expired if action == "expire" else [w.split(" ")[0] for w in summary.warned]
        assert sorted(acted) == sorted(labs)  # only this batch: the earlier ones were handled and are not due
        if action == "warn":  # warned labs stay due until expiry: move them on so the next batch is alone
            for name in labs:
                await world.update(name, state=LabState.DESTROYED)
    small, large = BATCHES[1] - BATCHES[0], BATCHES[2] - BATCHES[1]
    per_lab = (counts[BATCHES[1]] - counts[BATCHES[0]]) / small
    assert (counts[BATCHES[2]] - counts[BATCHES[1]]) / large == per_lab, counts  # linear in the batch size
    assert 1 <= per_lab <= PER_LAB_LIMIT, counts
    fixed = counts[BATCHES[0]] - BATCHES[0] * per_lab
    assert 0 < fixed <= FIXED_LIMIT, counts
    if action == "expire":
        assert len(world.kicked) == sum(BATCHES)  # every expired lab was handed to the engine once
