"""Row writes of the projector: an undo journal near the tip, write batching far from it.

Within the reorg window every change first records the row's before-image (or that it did not
exist) against the block being applied; rolling back to a fork point replays those images in
reverse. Far behind the head (a catch-up or rebuild) blocks can no longer be reorganised: the journal
is skipped and consecutive writes of the same shape are sent as one executemany, in order (any other
operation flushes them first), which is what makes a catch-up fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, select, tuple_, update

from node.indexer.schema import JournalEntry

CHUNK = 500  # keys per IN (...) list: well under SQLite's variable limit


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


class Store:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.journal_block: int | None = None  # block whose changes are journaled, None = off
        self._journal = _table(JournalEntry)
        # Pending batch: (kind, table name, shape) -> rows; flushed before any different operation.
        self._pending_key: tuple[str, str, tuple[str, ...]] | None = None
        self._pending_stmt: Any = None
        self._pending_rows: list[dict[str, Any]] = []
        # Rows of append-only tables (history, custody events): nothing reads them back while a range
        # is applied, so they wait for the end of the range whatever comes in between.
        self._appends: dict[str, tuple[Table, list[dict[str, Any]]]] = {}

    # ---- batching

    def flush(self) -> None:
        if self._pending_rows:
            self.conn.execute(self._pending_stmt, self._pending_rows)
        self._pending_key, self._pending_stmt, self._pending_rows = None, None, []

    def flush_all(self) -> None:
        self.flush()
        for table, rows in self._appends.values():
            if rows:
                self.conn.execute(insert(table), rows)
        self._appends = {}

    def append(self, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert into an append-only table (deferred to the end of the range when not journaling)."""
        if not rows:
            return
        if self.journal_block is not None:
            self.insert(model, rows)
            return
        table = _table(model)
        self._appends.setdefault(table.name, (table, []))[1].extend(dict(r) for r in rows)

    def _batch(
        self, key: tuple[str, str, tuple[str, ...]], stmt: Any, rows: Iterable[dict[str, Any]]
    ) -> None:
        if self._pending_key != key:
            self.flush()
            self._pending_key, self._pending_stmt = key, stmt
        self._pending_rows.extend(rows)

    # ---- journal

    def _pk_cols(self, table: Table) -> list[Any]:
        return list(table.primary_key.columns)

    def _record(
        self, table: Table, rows_before: Iterable[Mapping[str, Any]], inserted_pks: Iterable[tuple[Any, ...]]
    ) -> None:
        entries = []
        pk_names = [c.name for c in self._pk_cols(table)]
        for row in rows_before:
            entries.append(
                {
                    "block_number": self.journal_block,
                    "table_name": table.name,
                    "pk": json.dumps([row[n] for n in pk_names]),
                    "before": json.dumps(dict(row)),
                }
            )
        for pk in inserted_pks:
            entries.append(
                {
                    "block_number": self.journal_block,
                    "table_name": table.name,
                    "pk": json.dumps(list(pk)),
                    "before": None,
                }
            )
        if entries:
            self.conn.execute(insert(self._journal), entries)

    def _before(self, table: Table, where: Any) -> list[Mapping[str, Any]]:
        return [dict(r._mapping) for r in self.conn.execute(select(table).where(where))]

    # ---- writes

    def insert(self, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        table = _table(model)
        if self.journal_block is None:
            self._batch(("insert", table.name, tuple(rows[0])), insert(table), (dict(r) for r in rows))
            return
        self.flush()
        pk_names = [c.name for c in self._pk_cols(table)]
        self.conn.execute(insert(table), list(rows))
        self._record(table, [], [tuple(r[n] for n in pk_names) for r in rows])

    def update_keys(
        self,
        model: Any,
        column: str,
        keys: Sequence[Any],
        values: Mapping[str, Any],
        *,
        where: Mapping[str, Any] | None = None,
    ) -> None:
        """UPDATE model SET values WHERE column IN keys [AND where...]."""
        if not keys:
            return
        table = _table(model)
        extra = dict(where or {})
        if self.journal_block is None:
            # One parameter set per key; consecutive updates of the same shape go out together.
            shape = (column, *sorted(values), *sorted(extra))
            conditions = [table.c[column] == bindparam("_k")]
            conditions += [table.c[k] == bindparam(f"_w_{k}") for k in extra]
            stmt = update(table).where(and_(*conditions)).values({k: bindparam(f"_v_{k}") for k in values})
            row_common = {f"_v_{k}": v for k, v in values.items()} | {f"_w_{k}": v for k, v in extra.items()}
            self._batch(("update", table.name, shape), stmt, ({"_k": key, **row_common} for key in keys))
            return
        self.flush()
        col = table.c[column]
        extra_conditions = [table.c[k] == v for k, v in extra.items()]
        for i in range(0, len(keys), CHUNK):
            condition = and_(col.in_(list(keys[i : i + CHUNK])), *extra_conditions)
            self._record(table, self._before(table, condition), [])
            self.conn.execute(update(table).where(condition).values(**values))

    def update_row(self, model: Any, pk: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self.flush()
        table = _table(model)
        where = and_(*[table.c[k] == v for k, v in pk.items()])
        if self.journal_block is not None:
            self._record(table, self._before(table, where), [])
        self.conn.execute(update(table).where(where).values(**values))

    def get(self, model: Any, **pk: Any) -> dict[str, Any] | None:
        self.flush()
        table = _table(model)
        row = self.conn.execute(select(table).where(and_(*[table.c[k] == v for k, v in pk.items()]))).first()
        return dict(row._mapping) if row else None

    # ---- undo

    def rollback_after(self, block_number: int) -> int:
        """Undo every journaled change of blocks > block_number; returns how many rows were undone."""
        self.flush_all()
        entries = self.conn.execute(
            select(self._journal)
            .where(self._journal.c.block_number > block_number)
            .order_by(self._journal.c.id.desc())
        ).all()
        tables = {t.name: t for t in _all_tables()}
        for entry in entries:
            table = tables[entry.table_name]
            pk_cols = self._pk_cols(table)
            pk_values = json.loads(entry.pk)
            where = tuple_(*pk_cols) == tuple(pk_values) if len(pk_cols) > 1 else pk_cols[0] == pk_values[0]
            self.conn.execute(delete(table).where(where))
            if entry.before is not None:
                self.conn.execute(insert(table).values(**json.loads(entry.before)))
        self.conn.execute(delete(self._journal).where(self._journal.c.block_number > block_number))
        return len(entries)

    def prune_journal(self, below_block: int) -> None:
        self.flush_all()
        self.conn.execute(delete(self._journal).where(self._journal.c.block_number < below_block))


def _all_tables() -> list[Table]:
    from node.indexer.schema import STATE_TABLES

    return [_table(m) for m in STATE_TABLES]
