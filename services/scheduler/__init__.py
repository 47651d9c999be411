"""Scheduled sweeps over the lab database, and the leader election that runs them once across replicas.

    context   SweepContext: what a sweep needs from the running domain (built from a Runtime)
    expiry    warn before a lab expires, destroy it when it has, re-drive destroys that gave up
    health    run the health checks of ready labs, announce only changes
    orphans   find platform resources labbot made that no live lab owns; report, delete after a grace period
    jobs      the sweeps by name, for ``labbot sweep`` and for registration
    election  a PostgreSQL advisory lock held on a dedicated connection
    leader    ``Scheduler``: APScheduler running the sweeps only while this process leads

The database is the source of truth: every sweep reads it afresh and claims each action with the lab's
optimistic lock, so a sweep run twice (two replicas, or ``labbot sweep`` next to the bot) acts once.
"""

from __future__ import annotations
