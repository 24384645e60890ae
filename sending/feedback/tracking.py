"""Open and click tracking and one-click unsubscribe, per sender domain and off by default; a stream's defaults
and a message's own `track_opens`/`track_clicks` take the place of the domain's (message first).

Where the rewriting happens: in the worker, for each recipient, just before DKIM signing
(`delivery.deliver_to_domain` calls `tracked_copies`). The tokens in a pixel, a rewritten link and an
unsubscribe URL name one recipient delivery, so each recipient's copy differs. Rewriting at build time would mean
storing one body per recipient (up to 50 copies of a 25 MB message) or tokens that cannot tell recipients
apart; in the worker it costs one MIME rewrite and one signature per recipient, only for domains that track,
and since every recipient already has its own SMTP transaction (VERP) nothing extra goes over the wire. It also
covers SMTP-submitted mail exactly like API mail.

- Opens: a 1x1 GIF at the end of each HTML part. Image fetches by privacy proxies (Apple Mail Privacy
  Protection, Google's and Yahoo's image proxies, security scanners: POSTWERK_TRACKING_MACHINE_*) are recorded as
  `opened` with `machine: true`, never as a person's open. The first open of each kind is one event.
- Clicks: every http(s) link of the HTML parts points to `/t/c/<token>`, a signed token carrying the recipient
  and the original URL. An altered token is refused, so the redirect cannot be pointed anywhere else.
  `data-postwerk-track="off"` on an <a> keeps that link as it is.
- Unsubscribe: messages with a tag in the domain's `unsubscribe_tags` ("*": all) get List-Unsubscribe and
  List-Unsubscribe-Post (RFC 8058), unless the sender set List-Unsubscribe itself. A POST to the URL suppresses
  the address for the organization (reason `unsubscribe`).

URLs use the domain's tracking host (`track.DOMAIN`, a CNAME to POSTWERK_TRACKING_HOST) once that CNAME is seen,
else POSTWERK_TRACKING_HOST. Tokens are signed with Django's signing (SECRET_KEY, and SECRET_KEY_FALLBACKS while
a key is rotated).
"""

from __future__ import annotations

import html
import ipaddress
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage

import dns.exception
import dns.resolver
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from accounts.audit import audit_record, diff
from mail import wire_policy
from mail.dns import resolver
from mail.errors import PostwerkError
from sending.errors import Refused
from sending.feedback.suppressions import suppression_add
from sending.models import Domain, EventType, Message, Recipient, Suppression
from sending.states import click_recorded, open_repeated, recipient_changed

log = logging.getLogger(__name__)

SALT_OPEN = "postwerk.tracking.open"
SALT_CLICK = "postwerk.tracking.click"
SALT_UNSUBSCRIBE = "postwerk.tracking.unsubscribe"

# The smallest transparent GIF.
PIXEL = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"  # noqa: E501


class InvalidToken(PostwerkError, ValueError):
    """A tracking token that was altered, truncated or signed with another key."""


# --- tokens and URLs ------------------------------------------------------------------------------------------


def tracking_base(domain: Domain) -> str:
    host = domain.tracking_host if domain.tracking_host_ok else settings.POSTWERK_TRACKING_HOST
    return f"{settings.POSTWERK_TRACKING_SCHEME}://{host}"


def open_url(base: str, recipient_id: uuid.UUID) -> str:
    return f"{base}/t/o/{signing.dumps(recipient_id.hex, salt=SALT_OPEN)}"


def click_url(base: str, recipient_id: uuid.UUID, url: str) -> str:
    return f"{base}/t/c/{signing.dumps([recipient_id.hex, url], salt=SALT_CLICK, compress=True)}"


def unsubscribe_url(base: str, recipient_id: uuid.UUID) -> str:
    return f"{base}/t/u/{signing.dumps(recipient_id.hex, salt=SALT_UNSUBSCRIBE)}"


def _load(token: str, salt: str) -> object:
    try:
        return signing.loads(token, salt=salt)
    except (signing.BadSignature, ValueError, UnicodeError) as exc:
        raise InvalidToken(str(exc)) from exc


def _recipient_id(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(hex=str(value))
    except ValueError as exc:
        raise InvalidToken("no recipient in the token") from exc


def click_target(token: str) -> tuple[uuid.UUID, str]:
    """The recipient and original URL of a click token; InvalidToken if it was altered in any way."""
    value = _load(token, SALT_CLICK)
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        raise InvalidToken("malformed click token")
    url = value[1]
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidToken("not a web link")
    return _recipient_id(value[0]), url


# --- rewriting (pure) ---------------------------------------------------------------------------------------


_A_TAG = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_NO_TRACK = re.compile(r"""\bdata-postwerk-track\s*=\s*["']?off\b""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def html_tracked(text: str, *, pixel: str | None, link: Callable[[str], str] | None) -> str:
    """Rewrite the http(s) links of an HTML document through `link` and add the open pixel."""
    if link is not None:

        def tag(match: re.Match[str]) -> str:
            source = match.group(0)
            if _NO_TRACK.search(source):
                return source

            def href(m: re.Match[str]) -> str:
                url = html.unescape(m.group(2) if m.group(2) is not None else m.group(3)).strip()
                if not url.lower().startswith(("http://", "https://")):
                    return m.group(0)  # mailto:, tel:, #anchors and template placeholders stay as they are
                return f'{m.group(1)}"{html.escape(link(url), quote=True)}"'

            return _HREF.sub(href, source, count=1)

        text = _A_TAG.sub(tag, text)
    if pixel is not None:
        img = (
            f'<img src="{html.escape(pixel, quote=True)}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px" />'
        )
        ends = list(_BODY_END.finditer(text))
        text = text[: ends[-1].start()] + img + text[ends[-1].start() :] if ends else text + img
    return text


def html_cte(text: str) -> str:
    """7bit while the text is ASCII and every line fits RFC 5322's 998 octets, so the rewritten links go out as
    plain `href="https://..."` (the email package's own choice past 78 columns, quoted-printable or base64, would
    split or hide them). Else quoted-printable: 8bit may be re-encoded on the way, which breaks DKIM's body hash."""
    if text.isascii() and all(len(line) <= wire_policy.MAX_LINE for line in text.encode("ascii").splitlines()):
        return "7bit"
    return "quoted-printable"


def message_tracked(
    raw: bytes,
    *,
    smtputf8: bool = False,
    pixel: str | None = None,
    link: Callable[[str], str] | None = None,
    unsubscribe: str | None = None,
) -> bytes:
    """The message with its HTML parts rewritten and unsubscribe headers added. Pure: bytes in, bytes out."""
    # Postwerk's wire policy: the unsubscribe URL stays a plain URL (Python's own would encode it as RFC 2047
    # words), and the source headers go out as they came.
    policy = wire_policy.SMTPUTF8 if smtputf8 else wire_policy.SMTP
    msg = message_from_bytes(raw, _class=EmailMessage, policy=policy)
    changed = False
    if unsubscribe is not None and msg["List-Unsubscribe"] is None:
        # RFC 8058 §3: an HTTPS URI in List-Unsubscribe plus this exact List-Unsubscribe-Post, both DKIM-signed.
        msg["List-Unsubscribe"] = f"<{unsubscribe}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        changed = True
    if pixel is not None or link is not None:
        for part in msg.walk():
            if part.get_content_type() != "text/html" or part.get_content_disposition() == "attachment":
                continue
            try:
                text = part.get_content()
            except (LookupError, ValueError):
                continue  # an unknown charset: leave the part alone rather than damage it
            new = html_tracked(text, pixel=pixel, link=link)
            if new != text:
                part.set_content(new, subtype="html", cte=html_cte(new))
                changed = True
    return msg.as_bytes(policy=policy) if changed else raw


# --- the worker's side --------------------------------------------------------------------------------------


def _unsubscribe_wanted(domain: Domain, tags: list[str]) -> bool:
    wanted = set(domain.unsubscribe_tags or [])
    return bool(wanted) and ("*" in wanted or bool(wanted.intersection(tags or [])))


def tracking_wanted(message: bool | None, stream: bool | None, domain: bool) -> bool:
    """The first choice made: the message's own, else its stream's default, else its domain's."""
    for choice in (message, stream):
        if choice is not None:
            return choice
    return domain


def tracking_override_refusal(domain: Domain | None, *, opens: bool | None, clicks: bool | None) -> Refused | None:
    """Why a message may not ask for tracking itself (None when it may). A message turns tracking on only on a
    domain whose tracking host (track.DOMAIN, a CNAME to POSTWERK_TRACKING_HOST) has been seen: its links and pixel
    would otherwise point at a host that is not the sender's, which is what spam filters look for. Turning
    tracking off is always allowed. The refusal names each field asked (400)."""
    asked = [name for name, value in (("track_opens", opens), ("track_clicks", clicks)) if value]
    if not asked or domain is None or domain.tracking_host_ok:
        return None
    problem = (
        f"{domain.name} has no working tracking host: publish the CNAME {domain.tracking_host} → "
        f"{settings.POSTWERK_TRACKING_HOST} and check it (PATCH /api/v1/domains/{domain.pk}/tracking), "
        "or leave this field out."
    )
    return Refused(
        f"Tracking asked for a domain without a tracking host ({', '.join(asked)}).",
        code="invalid",
        http_status=400,
        fields={name: [problem] for name in asked},
        smtp_reply="550 5.7.1 Tracking asked for a domain without a tracking host",
    )


def tracked_copies(message: Message, recipients: list[Recipient], raw: bytes) -> dict[uuid.UUID, bytes] | None:
    """Each recipient's own copy of `raw` (the message as it goes out, unsigned) when the message's domain tracks
    anything, else None (one copy for all). No database: the domain comes with the message."""
    domain = message.domain
    if domain is None:
        return None
    stream = message.stream
    # Broadcast mail always carries one-click unsubscribe (RFC 8058; Gmail and Yahoo require it of bulk senders);
    # a message's own choice (track_opens/track_clicks) comes first, then the stream's default, then the domain's.
    unsubscribe = _unsubscribe_wanted(domain, message.tags) or (stream is not None and stream.is_broadcast)
    opens = tracking_wanted(message.track_opens, None if stream is None else stream.track_opens, domain.track_opens)
    clicks = tracking_wanted(message.track_clicks, None if stream is None else stream.track_clicks, domain.track_clicks)
    if not (opens or clicks or unsubscribe):
        return None
    base = tracking_base(domain)
    copies = {}
    try:
        for r in recipients:
            copies[r.pk] = message_tracked(
                raw,
                smtputf8=message.smtputf8,
                pixel=open_url(base, r.pk) if opens else None,
                link=(lambda url, pk=r.pk: click_url(base, pk, url)) if clicks else None,
                unsubscribe=unsubscribe_url(base, r.pk) if unsubscribe else None,
            )
    except Exception:  # MIME the email package cannot rebuild: deliver it untouched rather than not at all
        log.exception("tracking could not rewrite message %s; sending it untracked", message.pk)
        return None
    return copies


# --- recording opens, clicks and unsubscribes ---------------------------------------------------------------


@dataclass(frozen=True)
class Visitor:
    user_agent: str
    ip: str

    def details(self) -> dict[str, str]:
        return {"user_agent": self.user_agent[:500], "ip": self.ip}


def machine_reason(visitor: Visitor) -> str | None:
    """Why this fetch looks like a proxy or scanner rather than a person, or None."""
    agent = visitor.user_agent.lower()
    for needle in settings.POSTWERK_TRACKING_MACHINE_USER_AGENTS:
        if needle and needle.lower() in agent:
            return f"user agent {needle}"
    try:
        ip = ipaddress.ip_address(visitor.ip)
    except ValueError:
        return None
    for network in settings.POSTWERK_TRACKING_MACHINE_NETWORKS:
        if ip.version == network.version and ip in network:
            return f"proxy network {network}"
    return None


def open_record(*, token: str, visitor: Visitor) -> bool:
    """Record an open; True if it was the recipient's first of its kind (person or machine)."""
    recipient_id = _recipient_id(_load(token, SALT_OPEN))
    reason = machine_reason(visitor)
    field = "machine_opened_at" if reason else "opened_at"
    now = timezone.now()
    r = Recipient.objects.only("organization_id", "message_id", "address").filter(pk=recipient_id).first()
    if r is None:
        return False
    details = {"address": r.address, **visitor.details(), "machine": reason is not None}
    if reason:
        details["machine_reason"] = reason
    first = recipient_changed(
        r, EventType.OPENED, details, at=now, only_if={f"{field}__isnull": True}, unique=True, **{field: now}
    )
    if not first:
        open_repeated(r, details, at=now)  # no second event, but the total open count counts it
    return first


def click_record(*, token: str, visitor: Visitor) -> str:
    """Record a click and return the original URL to redirect to. InvalidToken if the token was altered."""
    recipient_id, url = click_target(token)
    r = Recipient.objects.only("organization_id", "message_id", "address").filter(pk=recipient_id).first()
    if r is not None:  # a deleted message's links still lead where they said
        click_recorded(r, {"address": r.address, "url": url, **visitor.details()})
    return url


def unsubscribe_recipient(token: str) -> Recipient:
    recipient = Recipient.objects.filter(pk=_recipient_id(_load(token, SALT_UNSUBSCRIBE))).first()
    if recipient is None:
        raise InvalidToken("no such delivery")
    return recipient


def unsubscribe_record(*, token: str, visitor: Visitor, method: str) -> Recipient:
    """Suppress the recipient's address for the organization; the first time is an `unsubscribed` event."""
    recipient = unsubscribe_recipient(token)
    # An unsubscribe is from the stream the message came on: leaving a newsletter does not stop password resets.
    stream_id = Message.objects.filter(pk=recipient.message_id).values_list("stream_id", flat=True).first()
    with transaction.atomic():
        _, created = suppression_add(
            stream_id=stream_id,
            organization_id=recipient.organization_id,
            address=recipient.address,
            reason=Suppression.Reason.UNSUBSCRIBE,
            details={"method": method},
            source_message_id=recipient.message_id,
            created_by="unsubscribe",
        )
        if created:
            details = {"address": recipient.address, "method": method, **visitor.details()}
            recipient_changed(recipient, EventType.UNSUBSCRIBED, details)
    return recipient


# --- per-domain settings --------------------------------------------------------------------------------------


def tracking_host_check(domain: Domain) -> bool | None:
    """Whether the domain's tracking host is a CNAME to POSTWERK_TRACKING_HOST; None when DNS did not answer."""
    try:
        answer = resolver().resolve(domain.tracking_host, "CNAME", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return False
    except dns.exception.DNSException:
        return None
    wanted = settings.POSTWERK_TRACKING_HOST.lower().rstrip(".")
    return any(str(r.target).lower().rstrip(".") == wanted for r in answer)


def domain_tracking_update(
    *,
    domain: Domain,
    opens: bool | None = None,
    clicks: bool | None = None,
    unsubscribe_tags: list[str] | None = None,
) -> Domain:
    """Change what a domain tracks and check its tracking CNAME again (a failed lookup changes nothing)."""
    fields = ("track_opens", "track_clicks", "unsubscribe_tags")
    before = {f: getattr(domain, f) for f in fields}
    if opens is not None:
        domain.track_opens = opens
    if clicks is not None:
        domain.track_clicks = clicks
    if unsubscribe_tags is not None:
        domain.unsubscribe_tags = list(dict.fromkeys(unsubscribe_tags))
    seen = tracking_host_check(domain)
    if seen is not None:
        domain.tracking_host_ok = seen
    with transaction.atomic():
        domain.save(update_fields=["track_opens", "track_clicks", "unsubscribe_tags", "tracking_host_ok"])
        changes = diff(before, {f: getattr(domain, f) for f in fields})
        if changes:
            audit_record(
                organization=domain.organization_id, action="domain.tracking_changed", target=domain, changes=changes
            )
    return domain
