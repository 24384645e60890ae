"""Signed, expiring links to an inbound message's raw bytes and to its attachments, for the post's receiver.

A link is `<POSTWERK_DASHBOARD_URL>/inbound-files/<token>`: the token is Django's TimestampSigner over the
inbound mail's id and the part (`raw` or the attachment's index), salted apart from every other signature. It
needs no API key, so it expires after POSTWERK_INBOUND_LINK_TTL seconds (longer than the post's retries last).
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse

from sending.models import InboundMail

_SALT = "postwerk.inbound.files"


def file_link(inbound_id: object, part: str) -> str:
    token = signing.TimestampSigner(salt=_SALT).sign_object({"id": str(inbound_id), "part": part}, compress=True)
    return f"{settings.POSTWERK_DASHBOARD_URL.rstrip('/')}/inbound-files/{token}"


def file_view(request: HttpRequest, token: str) -> HttpResponse:
    """GET of a link: the raw message (message/rfc822) or one attachment; 404 once expired or when forged."""
    from sending.inbound.parse import attachments, message_read

    try:
        ref = signing.TimestampSigner(salt=_SALT).unsign_object(token, max_age=settings.POSTWERK_INBOUND_LINK_TTL)
    except signing.BadSignature:
        raise Http404("unknown or expired link") from None
    inbound = InboundMail.objects.filter(pk=ref.get("id")).only("raw").first()
    if inbound is None:
        raise Http404("no such message")
    raw = bytes(inbound.raw)
    if ref.get("part") == "raw":
        return HttpResponse(raw, content_type="message/rfc822")
    found = attachments(message_read(raw))
    index = ref.get("part")
    if not isinstance(index, int) or not 0 <= index < len(found):
        raise Http404("no such attachment")
    attachment = found[index]
    response = HttpResponse(attachment.content, content_type=attachment.content_type)
    response["Content-Disposition"] = "attachment"
    return response
