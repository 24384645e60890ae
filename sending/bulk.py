"""One UPDATE statement for many rows with different values, on PostgreSQL and SQLite; and pipelined statements.

Django's bulk_update writes `SET col = CASE WHEN id = ... THEN ... END` for every column and row; building and
parsing that was about a third of the delivery worker's time. `UPDATE ... FROM (VALUES ...)` says the same in
a statement whose size grows linearly and which both databases plan as a join.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db import connection, models


def bulk_update_rows(model: type[models.Model], rows: Sequence[models.Model], fields: Sequence[str]) -> int:
    """Write `fields` of every row (matched by primary key) in one statement; returns the rows updated."""
    if not rows:
        return 0
    meta = model._meta
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["pk", *(f"c{i}" for i in range(len(columns)))]
    postgres = connection.vendor == "postgresql"

    def cast(field: models.Field, expression: str) -> str:
        # PostgreSQL types VALUES columns from the literals (text, integer, NULL); say what each one is.
        return f"CAST({expression} AS {field.db_type(connection)})" if postgres else expression

    placeholders = "(" + ", ".join(["%s"] * len(names)) + ")"
    params: list[object] = []
    for row in rows:
        params.append(pk.get_db_prep_value(row.pk, connection))
        for field in columns:
            params.append(field.get_db_prep_value(getattr(row, field.attname), connection))
    assignments = ", ".join(
        f"{quote(field.column)} = {cast(field, f'v.{name}')}" for field, name in zip(columns, names[1:], strict=True)
    )
    # Only identifiers from the model's own metadata (quoted) and %s placeholders go into the text; every value
    # is a parameter.
    values = ", ".join([placeholders] * len(rows))
    match = f"{table}.{quote(pk.column)} = {cast(pk, 'v.pk')}"
    sql = f"WITH v({', '.join(names)}) AS (VALUES {values}) UPDATE {table} SET {assignments} FROM v WHERE {match}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@contextmanager
def pipelined() -> Iterator[None]:
    """Statements inside are sent without waiting for each one's answer (psycopg's pipeline mode, PostgreSQL 14+
    clients): a transaction's BEGIN and its INSERTs cost one round trip instead of one each. Only for statements
    whose results nobody reads inside the block; errors arrive at its end, as Django's exceptions. Elsewhere
    (SQLite) a no-op."""
    pipeline = getattr(connection.connection, "pipeline", None) if connection.vendor == "postgresql" else None
    if pipeline is None:
        yield
        return
    with connection.wrap_database_errors, pipeline():
        yield
