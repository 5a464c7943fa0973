"""The event tables are made from the event schema (their Alembic migrations: test_migrate.py)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Float, String

from publishers.events import SCHEMA
from server.history.models import TABLES

SQL_TYPES = {"number": Float, "integer": BigInteger, "object": JSON, "text": String}


def test_each_event_table_is_its_kind_s_fields() -> None:
    assert list(TABLES) == list(SCHEMA)
    for kind, spec in SCHEMA.items():
        table = TABLES[kind]
        assert table.name == spec.table
        assert [c.name for c in table.columns] == ["id", "symbol", "epoch", "seq", *spec.names[1:]]
        for field in spec.fields:
            column = table.c[field.name]
            assert isinstance(column.type, SQL_TYPES[field.type]), (kind, field.name)
            assert column.nullable == field.nullable, (kind, field.name)
            if field.type == "text":
                assert column.type.length == field.max_length, (kind, field.name)
        indexed = {tuple(c.name for c in index.columns) for index in table.indexes}
        expected = {("symbol", "ts"), ("bot", "ts")} if "bot" in spec.names else {("symbol", "ts")}
        assert indexed == (expected | {("alert_id",)} if kind == "alert" else expected)
