"""Writing many rows at once: one INSERT path (COPY on PostgreSQL) and one UPDATE statement for many rows with
different values, on PostgreSQL and SQLite.

Django's bulk_update writes `SET col = CASE WHEN id = ... THEN ... END` for every column and row; building and
parsing that was about a third of the delivery worker's time. `UPDATE ... FROM unnest(one array per column)` on
PostgreSQL, and `UPDATE ... FROM (VALUES ...)` on SQLite, say the same in a statement both plan as a join.

Django's bulk_create on PostgreSQL builds an INSERT whose every value psycopg then quotes into the statement's
text (Django's psycopg cursors bind on the client): for the accepted-message rows that was a third of the SMTP
server's CPU. COPY sends the rows in PostgreSQL's text row format instead, written by psycopg's C code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import connection, models, transaction


def bulk_update_rows(model: type[models.Model], rows: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write `fields` of every row (matched by primary key) in one statement."""
    if not rows:
        return
    sql, params = _update_statement(model, rows, fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _update_statement(
    model: type[models.Model], rows: Sequence[models.Model], fields: Sequence[str]
) -> tuple[str, list[object]]:
    meta = model._meta
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    names = ["pk", *(f"c{i}" for i in range(len(columns)))]
    assignments = ", ".join(f"{quote(field.column)} = v.{name}" for field, name in zip(columns, names[1:], strict=True))
    match = f"{table}.{quote(pk.column)} = v.pk"
    # Only identifiers from the model's own metadata (quoted) and %s placeholders go into the text; every value
    # is a parameter.
    if connection.vendor == "postgresql":
        # One array per column: the statement's text is the same for any number of rows, so psycopg parses it
        # once (a VALUES list of a batch's placeholders was parsed anew each time, and each value quoted alone).
        arrays = [[row.pk for row in rows]]
        for field in columns:
            name, convert = _converter(field)
            arrays.append([row.__dict__[name] if convert is None else convert(row.__dict__[name]) for row in rows])
        typed = ", ".join(f"%s::{field.db_type(connection)}[]" for field in [pk, *columns])
        sql = f"UPDATE {table} SET {assignments} FROM unnest({typed}) AS v({', '.join(names)}) WHERE {match}"  # noqa: S608
        return sql, list(arrays)
    placeholders = "(" + ", ".join(["%s"] * len(names)) + ")"
    params = []
    for row in rows:
        params.append(pk.get_db_prep_value(row.pk, connection))
        for field in columns:
            params.append(field.get_db_prep_value(getattr(row, field.attname), connection))
    values = ", ".join([placeholders] * len(rows))
    sql = f"WITH v({', '.join(names)}) AS (VALUES {values}) UPDATE {table} SET {assignments} FROM v WHERE {match}"  # noqa: S608
    return sql, params


def update_and_insert_unflushed(
    model: type[models.Model],
    rows: Sequence[models.Model],
    fields: Sequence[str],
    new_model: type[models.Model],
    new_rows: Sequence[Mapping[str, Any]],
) -> None:
    """bulk_update_rows(model, rows, fields) and insert_rows(new_model, new_rows) together, committed without
    waiting for the disk flush (as commit_without_flush: only for writes that are safe to repeat).

    On PostgreSQL one statement, which outside a transaction is its own: the UPDATE and the INSERT as data-modifying
    CTEs, and `set_config(..., true)` as SET LOCAL. Written once per SMTP transaction by the delivery workers,
    where BEGIN, SET LOCAL, UPDATE, COPY and COMMIT were five round trips to the server (and the COPY three
    messages of its own), each a wake-up of both processes on a busy machine. Elsewhere both writes in one
    transaction."""
    if connection.vendor != "postgresql" or not rows or not new_rows or _copy_plan(new_model) is None:
        with transaction.atomic():
            commit_without_flush()
            bulk_update_rows(model, rows, fields)
            insert_rows(new_model, new_rows)
        return
    update, update_params = _update_statement(model, rows, fields)
    insert, insert_params = _insert_statement(new_model, new_rows)
    # A CTE that only reads runs only when the final SELECT reads it; the data-modifying ones always run.
    sql = (
        "WITH unflushed AS (SELECT set_config('synchronous_commit', 'off', true)),"  # noqa: S608
        f" updated AS ({update}), inserted AS ({insert}) SELECT count(*) FROM unflushed"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*update_params, *insert_params])


def _insert_statement(model: type[models.Model], rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[object]]:
    """INSERT ... SELECT FROM unnest(one array per column), on PostgreSQL: rows as insert_rows takes mappings."""
    _, columns = _copy_plan(model)
    fields = {f.attname: f for f in model._meta.concrete_fields}
    rows = [row if len(row) == len(columns) else _with_defaults(model, row) for row in rows]
    arrays = [[row[name] if convert is None else convert(row[name]) for row in rows] for name, convert in columns]
    quote = connection.ops.quote_name
    names = ", ".join(quote(fields[name].column) for name, _ in columns)
    typed = ", ".join(f"%s::{fields[name].db_type(connection)}[]" for name, _ in columns)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT * FROM unnest({typed})"  # noqa: S608
    return sql, arrays


def insert_rows(model: type[models.Model], rows: Sequence[models.Model | Mapping[str, Any]]) -> None:
    """INSERT new rows, each a model instance or a mapping of attribute names (`recipient_id`, not `recipient`)
    to values, where a missing field takes its default. A mapping costs a fraction of an instance to build, for
    rows nothing reads back. Like bulk_create without signals and without reading anything back: an
    auto-increment id stays None on an instance. On PostgreSQL one COPY per call; elsewhere bulk_create."""
    if not rows:
        return
    plan = _copy_plan(model) if connection.vendor == "postgresql" else None
    if plan is None:
        model.objects.bulk_create([row if isinstance(row, models.Model) else model(**row) for row in rows])
        return
    statement, columns = plan
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor, cursor.copy(statement) as copy:
        write = copy.write_row
        for row in rows:
            if isinstance(row, models.Model):
                values = row.__dict__
            else:
                values = row if len(row) == len(columns) else _with_defaults(model, row)
            write([values[name] if convert is None else convert(values[name]) for name, convert in columns])
    for row in rows:  # stored: saving an instance from now on is an UPDATE, as after bulk_create
        if isinstance(row, models.Model):
            row._state.adding, row._state.db = False, connection.alias


def _with_defaults(model: type[models.Model], row: Mapping[str, Any]) -> Mapping[str, Any]:
    defaults = {f.attname: f.get_default() for f in model._meta.concrete_fields if f.attname not in row}
    return {**defaults, **row}


# The field types whose Python values psycopg writes exactly as Django would have sent them.
_AS_IS = {
    "BigIntegerField",
    "BinaryField",
    "BooleanField",
    "CharField",
    "DateTimeField",
    "ForeignKey",
    "IntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
    "TextField",
    "UUIDField",
}
_Columns = list[tuple[str, Callable[[Any], Any] | None]]
_copy_plans: dict[type[models.Model], tuple[str, _Columns]] = {}


def _copy_plan(model: type[models.Model]) -> tuple[str, _Columns] | None:
    """The COPY statement for `model` and, per column, the instance attribute and how to convert its value; None
    for a model with a field that sets its value on save (auto_now), which bulk_create handles."""
    if model in _copy_plans:
        return _copy_plans[model]
    if any(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) for f in model._meta.concrete_fields):
        return None
    fields = [
        f
        for f in model._meta.concrete_fields
        if not (f.primary_key and f.get_internal_type() in ("AutoField", "BigAutoField", "SmallAutoField"))
    ]
    columns = [_converter(field) for field in fields]
    quote = connection.ops.quote_name
    names = ", ".join(quote(f.column) for f in fields)
    plan = _copy_plans[model] = (f"COPY {quote(model._meta.db_table)} ({names}) FROM STDIN", columns)
    return plan


def _converter(field: models.Field) -> tuple[str, Callable[[Any], Any] | None]:
    """The instance attribute holding `field`'s value, and how to turn it into what psycopg sends (None: as is)."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return field.attname, _json_dumps(field.encoder)
    if kind in _AS_IS:
        return field.attname, None
    return field.attname, lambda value: field.get_db_prep_save(value, connection)  # Django's own conversion


def _json_dumps(encoder: type[json.JSONEncoder] | None) -> Callable[[Any], str | None]:
    def dumps(value: Any) -> str | None:
        return None if value is None else json.dumps(value, cls=encoder)  # None is SQL NULL, as in Django

    return dumps


def commit_without_flush() -> None:
    """Inside a transaction: its COMMIT returns without waiting for PostgreSQL to flush it to disk
    (synchronous_commit off, for this transaction only). Only for writes whose loss in a crash of the database
    server itself is safe to repeat: the last fraction of a second of them may be forgotten, never half-written."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
