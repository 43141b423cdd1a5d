"""Close a race in Dagster's pool slot claim, which let two steps hold the one `warehouse_writer` slot.

Dagster 1.13's SQL event log storage claims a pool slot in two statements on a connection in
autocommit mode: `SELECT id ... WHERE step_key IS NULL FOR UPDATE SKIP LOCKED LIMIT 1`, then
`UPDATE ... SET run_id, step_key WHERE id = <that id>`. The row lock ends with the SELECT's own
transaction, and the UPDATE does not check that the slot is still free, so two processes that
claim at the same moment can both pick the free slot and both be told they hold it. Seen on
PostgreSQL in `reliability/test_pool.py` (two runs started together; their `raw_metrics` steps
wrote the warehouse at the same time, about 1 run in 7).

The replacement claims the slot only if it is still free when the UPDATE runs (PostgreSQL
re-checks the WHERE against the committed row), so the later claimer gets BLOCKED and its
executor tries again, as it does whenever the pool is busy. Installed when the code location
loads, i.e. in every run worker, which is where steps claim slots.
"""

from __future__ import annotations

import sqlalchemy as db
from dagster._core.storage.event_log import sql_event_log
from dagster._core.storage.event_log.schema import ConcurrencySlotsTable
from dagster._core.storage.sqlalchemy_compat import db_select
from dagster._utils.concurrency import ConcurrencySlotStatus


def _between_select_and_update() -> None:
    """Nothing in production: a test replaces it to let another claim run exactly here."""


def _claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str) -> ConcurrencySlotStatus:
    slots = ConcurrencySlotsTable.c
    free = db.and_(slots.concurrency_key == concurrency_key, slots.step_key == None,  # noqa: E711
                   slots.deleted == False)  # noqa: E712
    with self.index_connection() as conn:
        row = conn.execute(
            db_select([slots.id]).select_from(ConcurrencySlotsTable).where(free)
            .with_for_update(skip_locked=True).limit(1)
        ).fetchone()
        if not row or not row[0]:
            return ConcurrencySlotStatus.BLOCKED
        _between_select_and_update()
        claimed = conn.execute(
            ConcurrencySlotsTable.update().values(run_id=run_id, step_key=step_key)
            .where(db.and_(slots.id == row[0], free))
        ).rowcount
        return ConcurrencySlotStatus.CLAIMED if claimed else ConcurrencySlotStatus.BLOCKED


def install() -> None:
    """Replace the claim in Dagster's SQL event log storage (PostgreSQL, SQLite, MySQL)."""
    if not hasattr(sql_event_log.SqlEventLogStorage, "_claim_concurrency_slot"):
        raise RuntimeError("this Dagster has no SqlEventLogStorage._claim_concurrency_slot: check whether the "
                           "pool claim race (neuropilot_pipeline/pool_claim_fix.py) is fixed upstream and remove "
                           "the fix, or port it")
    sql_event_log.SqlEventLogStorage._claim_concurrency_slot = _claim_concurrency_slot
