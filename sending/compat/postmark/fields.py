"""Postmark's message fields, translated to the send API's (sending.api.serializers.SendMessageSerializer), and
the send API's field errors translated back into Postmark's words. Pure: no database, no request.

The send API validates the translated message, so a Postmark message is held to exactly the rules of a native
one; only the names differ. Fields Postmark has and Postwerk does not are ignored or refused here, each with the
reason in the README's table ("Compatible APIs" → "Postmark").
"""

from __future__ import annotations

from dataclasses import dataclass

# Postmark's default transactional stream is named `outbound`; Postwerk's is `transactional`.
POSTMARK_DEFAULT_STREAM = "outbound"
TRANSACTIONAL = "transactional"

# The send API's field → the Postmark field a client knows it by.
POSTMARK_NAMES = {
    "from": "From",
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "reply_to": "ReplyTo",
    "subject": "Subject",
    "text": "TextBody",
    "html": "HtmlBody",
    "headers": "Headers",
    "attachments": "Attachments",
    "tags": "Tag",
    "metadata": "Metadata",
    "stream": "MessageStream",
    "template": "TemplateId",
    "model": "TemplateModel",
    "track_opens": "TrackOpens",
    "track_clicks": "TrackLinks",
}
# Postmark's TrackLinks → the send API's track_clicks. Postwerk rewrites the links of the HTML part only (its text
# part goes out as written), so HtmlAndText tracks the HTML links and TextOnly, which would track nothing Postwerk
# can rewrite, is refused rather than taken as a promise it cannot keep (README: Compatible APIs → Postmark).
TRACK_LINKS = {"None": False, "HtmlOnly": True, "HtmlAndText": True}
TRACK_LINKS_TEXT_ONLY = "TextOnly"
_ADDRESS_FIELDS = {"From": "from", "To": "to", "Cc": "cc", "Bcc": "bcc", "ReplyTo": "reply_to"}


class PostmarkInvalid(ValueError):
    """A Postmark message that cannot even be translated (a field of the wrong JSON type): ErrorCode 300."""


@dataclass
class Translated:
    """A Postmark message as send-API fields, with the address lists as split (to quote them in errors)."""

    message: dict
    addresses: dict[str, list[str]]


def split_addresses(value: str) -> list[str]:
    """Postmark's comma-separated address list, split at the commas outside quotes, comments and angle brackets
    (`"Doe, Jane" <jane@example.com>, bob@example.com` is two addresses)."""
    parts, current, quoted, depth, angle, escaped = [], [], False, 0, False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")" and depth:
            depth -= 1
        elif not quoted and char == "<":
            angle = True
        elif not quoted and char == ">":
            angle = False
        elif char == "," and not (quoted or depth or angle):
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _string(data: dict, name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PostmarkInvalid(f"Invalid '{name}': a string is expected.")
    return value


def _headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, list) or not all(isinstance(h, dict) for h in value):
        raise PostmarkInvalid('Invalid \'Headers\': a list of {"Name", "Value"} objects is expected.')
    headers: dict[str, str] = {}
    for header in value:
        name, header_value = header.get("Name"), header.get("Value", "")
        if not isinstance(name, str) or not isinstance(header_value, str):
            raise PostmarkInvalid("Invalid 'Headers': each Name and Value is a string.")
        headers[name] = header_value
    return headers


def _attachments(value: object) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise PostmarkInvalid("Invalid 'Attachments': a list of attachment objects is expected.")
    out = []
    for attachment in value:
        item = {"filename": attachment.get("Name"), "content": attachment.get("Content")}
        if attachment.get("ContentType"):
            item["content_type"] = attachment["ContentType"]
        content_id = attachment.get("ContentID")
        if isinstance(content_id, str) and content_id:
            # Postmark takes "cid:logo.png" (anymail sends that) or the bare id; MIME's Content-ID is the bare id.
            item["content_id"] = content_id[4:] if content_id.lower().startswith("cid:") else content_id
        out.append(item)
    return out


def _metadata(value: object) -> object:
    if not isinstance(value, dict):
        return value  # the send API names the problem
    # Postmark keeps metadata values as strings; numbers and booleans a client sends are taken as their text.
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v)) if isinstance(v, int | float) else v
        for k, v in value.items()
    }


def _tracking(data: dict) -> dict[str, bool]:
    """TrackOpens and TrackLinks as the send API's track_opens/track_clicks; absent or null: the stream's or the
    domain's setting."""
    out: dict[str, bool] = {}
    opens = data.get("TrackOpens")
    if opens is not None:
        if not isinstance(opens, bool):
            raise PostmarkInvalid("Invalid 'TrackOpens': true or false is expected.")
        out["track_opens"] = opens
    links = data.get("TrackLinks")
    if links is not None:
        if links == TRACK_LINKS_TEXT_ONLY:
            raise PostmarkInvalid(
                "Invalid 'TrackLinks': Postwerk tracks the links of the HTML body only; TextOnly is not supported "
                "(use HtmlOnly, HtmlAndText or None)."
            )
        if not isinstance(links, str) or links not in TRACK_LINKS:
            raise PostmarkInvalid("Invalid 'TrackLinks': one of None, HtmlAndText, HtmlOnly, TextOnly is expected.")
        out["track_clicks"] = TRACK_LINKS[links]
    return out


def postwerk_message(data: object, *, template: bool) -> Translated:
    """The send-API fields of one Postmark message. `template`: the request came to a withTemplate endpoint,
    where TemplateId/TemplateAlias and TemplateModel are read (Postmark's /email and /email/batch ignore them).
    TrackOpens and TrackLinks become track_opens and track_clicks (HTML links only: TextOnly is refused); InlineCss
    is ignored (Postwerk always inlines a template's CSS). Raises PostmarkInvalid for a field of the wrong JSON type."""
    if not isinstance(data, dict):
        raise PostmarkInvalid("Each message is a JSON object.")
    message: dict = {}
    addresses: dict[str, list[str]] = {}
    for name, field in _ADDRESS_FIELDS.items():
        value = _string(data, name)
        if value:
            addresses[name] = split_addresses(value)
            message[field] = addresses[name]
    for name, field in (("Subject", "subject"), ("TextBody", "text"), ("HtmlBody", "html")):
        value = _string(data, name)
        if value is not None and (value or not template):
            message[field] = value
    message["headers"] = _headers(data.get("Headers"))
    message["attachments"] = _attachments(data.get("Attachments"))
    tag = _string(data, "Tag")
    if tag:
        message["tags"] = [tag]
    if data.get("Metadata") is not None:
        message["metadata"] = _metadata(data["Metadata"])
    message.update(_tracking(data))
    stream = _string(data, "MessageStream")
    if stream:
        message["stream"] = TRANSACTIONAL if stream.lower() == POSTMARK_DEFAULT_STREAM else stream
    if template:
        template_id, alias = data.get("TemplateId"), data.get("TemplateAlias")
        if template_id in (None, "") and alias in (None, ""):
            raise PostmarkInvalid("Either 'TemplateId' or 'TemplateAlias' is required to send with a template.")
        if template_id not in (None, "") and (isinstance(template_id, bool) or not isinstance(template_id, int)):
            raise PostmarkInvalid("Invalid 'TemplateId': a number is expected.")
        message["template"] = template_id if template_id not in (None, "") else alias
        model = data.get("TemplateModel")
        message["model"] = {} if model is None else model
    return Translated(message, addresses)


def invalid_message(fields: object, addresses: dict[str, list[str]]) -> str:
    """Postmark's ErrorCode 300 message for the send API's field errors: the first problem, in Postmark's words
    and field names. A bad recipient reads "Invalid 'To' address: 'x'." as Postmark's does (anymail reads the
    address out of it and reports that recipient `invalid`)."""
    if not isinstance(fields, dict) or not fields:
        return "Invalid email request."
    if "text" in fields and "body is required" in _first_problem(fields["text"]):
        return "Provide either email TextBody or HtmlBody or both."
    for field, problems in fields.items():
        name = POSTMARK_NAMES.get(str(field), str(field))
        if name in _ADDRESS_FIELDS and isinstance(problems, dict):
            index = next(iter(problems))
            given = addresses.get(name, [])
            if isinstance(index, int | str) and str(index).isdigit() and int(index) < len(given):
                return f"Invalid '{name}' address: '{given[int(index)]}'."
        if name == "To" and not addresses.get("To") and not addresses.get("Cc") and not addresses.get("Bcc"):
            return "Zero recipients specified."
        return f"Invalid '{name}': {_first_problem(problems)}"
    return "Invalid email request."


def _first_problem(problems: object) -> str:
    while isinstance(problems, dict | list) and problems:
        problems = next(iter(problems.values())) if isinstance(problems, dict) else problems[0]
    return str(problems)
