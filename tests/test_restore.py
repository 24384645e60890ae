"""Backup and restore, as the README documents them: the database copied with the tools an operator uses
(pg_dump -Fc / pg_restore on PostgreSQL, SQLite's online backup API when embedded) into a fresh database that
holds the same rows, and a DKIM private key that still decrypts with POSTWERK_ENCRYPTION_KEY."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid

import pytest
from django.db import connection

from mail.crypto import decrypt
from sending.models import DkimKey, Message, Recipient

pytestmark = pytest.mark.django_db(transaction=True)  # committed rows: pg_dump reads from another session


@pytest.fixture
def some_mail(api):
    for i in range(3):
        response = api.post(
            "/api/v1/messages",
            {"from": "hello@acme.example", "to": [f"u{i}@dest.example", "x@dest.example"], "text": "Hi"},
            format="json",
        )
        assert response.status_code == 202
    return {"messages": Message.objects.count(), "recipients": Recipient.objects.count()}


def _check_restored(rows: dict, query) -> None:  # type: ignore[no-untyped-def]
    assert query("SELECT count(*) FROM sending_message")[0][0] == rows["messages"] == 3
    assert query("SELECT count(*) FROM sending_recipient")[0][0] == rows["recipients"] == 6
    keys = query("SELECT private_key_encrypted FROM sending_dkimkey")
    assert len(keys) == DkimKey.objects.count() >= 1
    for (encrypted,) in keys:
        assert decrypt(encrypted).startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the embedded run checks the SQLite backup")
def test_pg_dump_and_pg_restore_into_a_fresh_database(some_mail, tmp_path):
    import psycopg

    params = connection.settings_dict
    env = {**os.environ, "PGPASSWORD": params.get("PASSWORD") or ""}
    common = ["-h", params.get("HOST") or "127.0.0.1", "-p", str(params.get("PORT") or 5432)]
    common += ["-U", params.get("USER") or "postgres"]
    dump = tmp_path / "postwerk.dump"
    subprocess.run(["pg_dump", *common, "-Fc", "-f", str(dump), params["NAME"]], env=env, check=True)
    fresh = f"{params['NAME']}_restore_{uuid.uuid4().hex[:8]}"
    subprocess.run(["createdb", *common, fresh], env=env, check=True)
    try:
        subprocess.run(
            ["pg_restore", *common, "--no-owner", "--exit-on-error", "-d", fresh, str(dump)], env=env, check=True
        )
        conninfo = {k: v for k, v in (("host", common[1]), ("port", common[3]), ("user", common[5])) if v}
        with psycopg.connect(dbname=fresh, password=params.get("PASSWORD") or None, **conninfo) as restored:
            _check_restored(some_mail, lambda sql: restored.execute(sql).fetchall())
    finally:
        subprocess.run(["dropdb", *common, "--if-exists", fresh], env=env, check=True)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the PostgreSQL run checks pg_dump")
def test_sqlite_online_backup_into_a_fresh_file(some_mail, tmp_path):
    connection.ensure_connection()
    target = tmp_path / "backup.sqlite3"
    with sqlite3.connect(target) as copy:
        connection.connection.backup(copy)  # what `sqlite3 postwerk.sqlite3 ".backup FILE"` does
    with sqlite3.connect(target) as restored:
        _check_restored(some_mail, lambda sql: restored.execute(sql).fetchall())
