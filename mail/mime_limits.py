"""How deep does a message's MIME tree go? Measured on the bytes, without recursion, so a hostile message cannot
exhaust the stack of the parsers that read it later (the email package recurses once per level: a few thousand
levels end in RecursionError, found by tests/fuzz). Postfix refuses past its `mime_nesting_limit` of 100; so do we.
"""

from __future__ import annotations

import re

__all__ = ["MAX_MIME_DEPTH", "mime_depth", "mime_too_deep"]

MAX_MIME_DEPTH = 100

_CONTENT_TYPE_LINE = re.compile(rb"(?im)^content-type[ \t]*:")
_BOUNDARY = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"]*)"|([^\s;]+))')


def _container(content_type: bytes) -> tuple[str, bytes] | None:
    value = content_type.strip().lower()
    if value.startswith(b"multipart/"):
        match = _BOUNDARY.search(content_type)
        boundary = (match.group(1) if match and match.group(1) is not None else match.group(2)) if match else None
        return ("multipart", boundary) if boundary else None
    if value.startswith(b"message/rfc822") or value.startswith(b"message/global"):
        return ("message", b"")
    return None


def mime_too_deep(raw: bytes, limit: int = MAX_MIME_DEPTH) -> bool:
    # Each level needs its own Content-Type field: a message with few of them is answered without a scan.
    if len(_CONTENT_TYPE_LINE.findall(raw)) <= limit:
        return False
    return mime_depth(raw, stop_at=limit) > limit


def mime_depth(raw: bytes, *, stop_at: int | None = None) -> int:
    """The nesting depth of multipart and message/rfc822 containers (the scan stops once past `stop_at`)."""
    stack: list[tuple[str, bytes]] = []
    deepest, in_headers, content_type = 0, True, b""
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if in_headers:
            if line[:1] in (b" ", b"\t") and content_type:
                content_type += line
            elif line.lower().startswith(b"content-type:"):
                content_type = line.split(b":", 1)[1]
            elif line == b"":
                container = _container(content_type) if content_type else None
                content_type, in_headers = b"", False
                if container is not None:
                    stack.append(container)
                    deepest = max(deepest, len(stack))
                    if stop_at is not None and deepest > stop_at:
                        return deepest
                    in_headers = container[0] == "message"  # an embedded message starts with its own headers
            elif b":" not in line:
                content_type = b""
            continue
        if not line.startswith(b"--"):
            continue
        for index in range(len(stack) - 1, -1, -1):
            kind, boundary = stack[index]
            if kind != "multipart":
                continue
            if line.rstrip() == b"--" + boundary + b"--":
                del stack[index:]
                break
            if line.rstrip() == b"--" + boundary:
                del stack[index + 1 :]
                in_headers = True
                break
    return deepest
