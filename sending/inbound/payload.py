"""The JSON a post route sends: Postmark's inbound webhook fields, plus the authentication and spam results and
links.

Attachments are inline (base64 `Content`) while their decoded sizes add up to at most
POSTWERK_INBOUND_INLINE_ATTACHMENTS (512 KiB by default, so a post stays under the 1 MB request body limit that
common proxies ship with); the rest carry a signed, expiring `Url` instead of `Content`.
"""

from __future__ import annotations

import base64

from django.conf import settings

from sending.inbound.links import file_link
from sending.inbound.parse import Attachment
from sending.inbound.spam import spam_status
from sending.models import InboundMail


def attachments_payload(inbound_id: object, found: list[Attachment]) -> list[dict]:
    budget, listed = settings.POSTWERK_INBOUND_INLINE_ATTACHMENTS, []
    for index, attachment in enumerate(found):
        item: dict[str, object] = {
            "Name": attachment.name,
            "ContentType": attachment.content_type,
            "ContentLength": len(attachment.content),
            "ContentID": attachment.content_id,
        }
        if len(attachment.content) <= budget:
            budget -= len(attachment.content)
            item["Content"] = base64.b64encode(attachment.content).decode()
        else:
            item["Url"] = file_link(inbound_id, index)
        listed.append(item)
    return listed


def inbound_payload(inbound: InboundMail, found: list[Attachment]) -> dict:
    """What the route's endpoint receives for one inbound mail."""
    return {
        **inbound.parsed,
        "MessageID": str(inbound.id),
        "MessageStream": "inbound",
        "ReceivedAt": inbound.received_at.isoformat().replace("+00:00", "Z"),
        "Attachments": attachments_payload(inbound.id, found),
        "AuthenticationResults": inbound.auth.get("header", ""),
        "Authentication": {k: v for k, v in inbound.auth.items() if k != "header"},
        # The spam check: `spam`, `ham` or `not checked` (then the score, threshold and rules are null).
        "SpamStatus": spam_status(inbound.spam),
        "SpamScore": inbound.spam.get("score"),
        "SpamThreshold": inbound.spam.get("threshold"),
        "SpamRules": inbound.spam.get("rules"),
        "RawUrl": file_link(inbound.id, "raw"),
    }
