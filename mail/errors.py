"""The root of every exception Postwerk raises on purpose.

A caller (a view, a task, an SMTP handler) can then tell "Postwerk said no" from a bug with one `except`. Classes
that callers already catch as a built-in (ValueError, PermissionError) keep that base beside this one.
"""

from __future__ import annotations


class PostwerkError(Exception):
    """Base of the exceptions Postwerk raises on purpose."""
