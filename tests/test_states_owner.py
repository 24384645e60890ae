"""sending.states is the one owner of recipient state and of events: this reads the code and fails when anything else
writes a recipient's state or sequence number, or an Event row (issue #19)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mail", "accounts", "sending", "verification", "dashboard", "config")
OWNER = ROOT / "sending" / "states.py"
EVENT_WRITES = {"create", "bulk_create", "update", "get_or_create", "update_or_create", "delete_not"}


def _sources() -> list[Path]:
    files = []
    for package in PACKAGES:
        files += [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts and p != OWNER]
    return files


READS = {"values_list", "values", "only", "order_by"}


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    # A field name handed to a read (values_list("event_seq")) is not a write.
    read_names = {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in READS
        for arg in node.args
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "event_seq" in node.value:
            if id(node) not in read_names and not _in_f_expression(tree, node):
                found.append((node.lineno, "SQL naming event_seq"))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        text = ast.unparse(func)
        if isinstance(func, ast.Attribute) and text.startswith("Event.objects.") and func.attr in EVENT_WRITES:
            found.append((node.lineno, text))
        if text.endswith(("insert_rows", "bulk_update_rows")) and node.args:
            model = ast.unparse(node.args[0])
            if model in ("Event", "Recipient") and not (text.endswith("insert_rows") and model == "Recipient"):
                found.append((node.lineno, f"{text}({model}, …)"))
        if isinstance(func, ast.Attribute) and func.attr == "update":
            for keyword in node.keywords:
                value = ast.unparse(keyword.value)
                if keyword.arg == "event_seq" or (keyword.arg == "state" and "RecipientState" in value):
                    found.append((node.lineno, f".update({keyword.arg}={value})"))
    return found


def _in_f_expression(tree: ast.AST, constant: ast.Constant) -> bool:
    """F("event_seq") is flagged through the .update() holding it, not twice."""
    calls = (node for node in ast.walk(tree) if isinstance(node, ast.Call))
    return any(ast.unparse(call.func) == "F" and constant in call.args for call in calls)


def test_nothing_but_sending_states_writes_recipient_state_or_events():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in _sources()
        for line, what in _writes(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == [], "write these through sending.states:\n" + "\n".join(offenders)


def test_the_check_finds_each_kind_of_write():
    """The reader above must see every shape of write it forbids, or the test would pass on anything."""
    code = """
Event.objects.create(type="x")
Event.objects.bulk_create([])
insert_rows(Event, rows)
bulk_update_rows(Recipient, rows, ["state"])
Recipient.objects.filter(pk=1).update(state=RecipientState.QUEUED)
qs.update(event_seq=F("event_seq") + 1)
cursor.execute("UPDATE sending_recipient SET event_seq = event_seq + 1")
Recipient.objects.values_list("id", "event_seq")
"""
    assert [what for _, what in _writes(ast.parse(code))] == [
        "Event.objects.create",
        "Event.objects.bulk_create",
        "insert_rows(Event, …)",
        "bulk_update_rows(Recipient, …)",
        ".update(state=RecipientState.QUEUED)",
        ".update(event_seq=F('event_seq') + 1)",
        "SQL naming event_seq",
    ]
