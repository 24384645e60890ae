"""The embedded broker writes each message whole: a worker never sees a half-written file."""

from __future__ import annotations

import os

from kombu import Connection

from config.filesystem_broker import Transport


def _connection(folder: str) -> Connection:
    options = {"data_folder_in": folder, "data_folder_out": folder, "processed_folder": folder}
    return Connection("filesystem://", transport=Transport, transport_options=options)


def test_a_message_appears_complete_and_a_partial_file_is_never_read(tmp_path):
    folder = str(tmp_path)
    with _connection(folder) as conn:
        channel = conn.default_channel
        # What a writer in the middle of its write leaves: a partial file under a name no queue matches.
        (tmp_path / ".0123.partial").write_bytes(b"")
        channel._put("delivery", {"body": "x" * 10_000})
        names = sorted(os.listdir(folder))
        assert [n for n in names if n.endswith(".delivery.msg")], names
        assert channel._get("delivery") == {"body": "x" * 10_000}
        assert [n for n in os.listdir(folder) if not n.endswith(".partial")] == []


def test_the_embedded_default_uses_it():
    from kombu.transport import resolve_transport

    import config.celery  # noqa: F401 - registers the alias

    assert resolve_transport("filesystem") is Transport
