"""The tag=value list shared by DKIM key records (RFC 6376 §3.2) and DMARC records (RFC 7489 §6.4)."""

from __future__ import annotations

import re

from mail.errors import PostwerkError

# RFC 6376 §3.2: tag-name = ALPHA *ALNUMPUNC, ALNUMPUNC = ALPHA / DIGIT / "_".
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


class TagListError(PostwerkError, ValueError):
    """The text is not a valid tag-list; the message says why, for a person."""


def parse_tag_list(text: str) -> list[tuple[str, str]]:
    """``"v=DKIM1; k=rsa; p=..."`` → ``[("v", "DKIM1"), ("k", "rsa"), ("p", "...")]``, in record order.

    Tag names are lower-cased (they are case-insensitive in both RFCs); values keep their case with the
    surrounding whitespace (FWS) removed. Empty segments (``;;``, a trailing ``;``) are tolerated as
    verifiers do. A duplicate tag makes the whole list invalid (RFC 6376 §3.2).
    """
    tags: list[tuple[str, str]] = []
    seen: set[str] = set()
    for segment in text.split(";"):
        if not segment.strip():
            continue
        name, sep, value = segment.partition("=")
        name = name.strip()
        if not sep:
            raise TagListError(f"{segment.strip()!r} is not a tag=value pair")
        if not _TAG_NAME.match(name):
            raise TagListError(f"{name!r} is not a valid tag name")
        key = name.lower()
        if key in seen:
            raise TagListError(f"the tag {key}= appears more than once")
        seen.add(key)
        tags.append((key, value.strip()))
    return tags
