"""Bounces that are not RFC 3464 DSNs: find each failed recipient and the text that says why.

Our own rules, one per family of published formats, run on the human-readable notice (the text before the
quoted original):
- Exim ("The following address(es) failed:", indented address then indented reason; X-Failed-Recipients);
- qmail's QSBMF, Yahoo's "Failure Notice", Postfix before 2.3, Courier: paragraphs that start "<address>:";
- Sendmail's "----- The following addresses had permanent fatal errors -----" and its session transcript;
- Exchange and Outlook ("Diagnostic information for administrators", "The following recipient(s) cannot be
  reached:");
- Google's plain-text notices ("Delivery to the following recipient failed permanently:");
- Lotus Notes / Domino and other "was not delivered to: ... because: ..." notices;
- "Your message to <x> was automatically rejected:" (Dovecot LDA quota notices, RFC 3798 MDN look-alikes).
Where none of them finds a recipient, flufl.bounce's detectors (Mailman's collection of 17 provider formats)
name the addresses, and the reason is read from the text around each address.
"""

from __future__ import annotations

import logging
import re
from copy import deepcopy
from dataclasses import dataclass
from email.message import Message

from mail.bounces import message as mime

log = logging.getLogger(__name__)

# flufl.bounce logs one INFO line per detector per message; keep that out of the logs unless configured otherwise.
_flufl_log = logging.getLogger("flufl.bounce")
if _flufl_log.level == logging.NOTSET:
    _flufl_log.setLevel(logging.WARNING)


@dataclass
class Found:
    address: str
    diagnostic: str
    action: str = "failed"  # or "delayed"
    remote_mta: str = ""
    rule: str = ""  # the rule that found it: "exim", "sentence", "flufl.bounce"...


BOUNCE_FROM_RE = re.compile(
    r"mailer-daemon|postmaster|mail delivery (?:system|subsystem)|mail ?administrator|microsoft outlook"
    r"|mailerdaemon|mail delivery service|nobody@|noreply-dmarc|bounce",
    re.IGNORECASE,
)
BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered|delivery (?:status notification|failure|failed|has failed|problem|notification)"
    r"|returned mail|failure notice|mail delivery failed|non[- ]?delivery|could not be delivered"
    r"|returned to sender|delivery report|nondeliverable|warning: could not send|delayed mail|not delivered"
    r"|mail system error|rejected:|message delayed|delivery delayed|unzustellbar|non remis|no entregado",
    re.IGNORECASE,
)
WARNING_RE = re.compile(
    r"this is a warning only|has not yet been delivered|has been delayed|transient non-fatal errors"
    r"|warning: could not send message for past|will (?:continue to )?be retried|delivery attempts will continue"
    r"|still being retried|will retry|technical details of temporary failure|delivery is delayed"
    r"|delivery has been delayed|delay reason:",
    re.IGNORECASE,
)
_ADDR = r"[^\s<>@\"'(),;:]{1,64}@[a-z0-9][a-z0-9.\-]{0,250}[a-z0-9]"
_REMOTE_RE = re.compile(r"\bhost ([a-z0-9][a-z0-9.\-]*\.[a-z]{2,})\.?\s*\[", re.IGNORECASE)
_NOISE_LOCALS = ("mailer-daemon", "postmaster", "mail-daemon", "root", "nobody")
_LIBRARY_MAX_BYTES = 256 * 1024


def looks_like_bounce(msg: Message) -> bool:
    if mime.header(msg, "x-failed-recipients"):
        return True
    if BOUNCE_FROM_RE.search(mime.header(msg, "from")):
        return True
    return bool(BOUNCE_SUBJECT_RE.search(mime.header(msg, "subject")))


def split_notice(text: str) -> str:
    """The notice without the quoted original (which holds our own addresses and could mislead the rules)."""
    match = mime.ORIGINAL_MARKERS.search(text)
    return text[: match.start()] if match else text


def remote_mta(diagnostic: str) -> str:
    match = _REMOTE_RE.search(diagnostic)
    return match.group(1).lower() if match else ""


def _join(lines: list[str]) -> str:
    return " ".join(" ".join(lines).split())[:2000]


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


# Exim (spec chapter 50 "Bounce messages"; also its delay warnings).
_EXIM_START = re.compile(
    r"following address(?:\(es\)|es)? failed:|address(?:\(es\)|es)? to which the message has not yet been delivered"
    r"|could not be delivered to one or more of its\s+recipients",
    re.IGNORECASE,
)
_EXIM_ADDRESS = re.compile(rf"^ {{1,4}}<?({_ADDR})>?\s*(?:\(.*\))?\s*$", re.IGNORECASE)


def exim(text: str) -> list[Found]:
    start = _EXIM_START.search(text)
    if not start:
        return []
    found: list[Found] = []
    current: Found | None = None
    reason_lines: list[str] = []
    delayed = "has not yet been delivered" in text[: start.end() + 200]
    for line in _lines(text[start.end() :])[:400]:
        match = _EXIM_ADDRESS.match(line)
        if match:
            if current:
                current.diagnostic = _join(reason_lines)
                found.append(current)
            current, reason_lines = Found(match.group(1), "", "delayed" if delayed else "failed"), []
        elif current and line.startswith("    ") and line.strip():
            reason_lines.append(line.strip().removeprefix("Delay reason:").strip())
        elif current and not line.strip() and reason_lines:
            current.diagnostic = _join(reason_lines)
            found.append(current)
            current, reason_lines = None, []
        elif found and line.strip() and not line.startswith(" "):
            break
    if current:
        current.diagnostic = _join(reason_lines)
        found.append(current)
    return found


# "<address>: reason" paragraphs: qmail QSBMF (cr.yp.to/proto/qsbmf.txt), Yahoo, Postfix < 2.3, Courier, Dovecot.
_ANGLE_PARAGRAPH = re.compile(rf"^\s{{0,4}}<({_ADDR})>:?\s*(.*)$", re.IGNORECASE)


def angle_paragraphs(text: str) -> list[Found]:
    found: list[Found] = []
    current: Found | None = None
    reason_lines: list[str] = []
    for line in _lines(text)[:2000]:
        match = _ANGLE_PARAGRAPH.match(line)
        if match and (match.group(2).strip() or line.rstrip().endswith(":")):
            if current:
                current.diagnostic = _join(reason_lines)
                found.append(current)
            current, reason_lines = Found(match.group(1), ""), [match.group(2)]
        elif current and line.strip():
            reason_lines.append(line.strip())
        elif current:
            current.diagnostic = _join(reason_lines)
            found.append(current)
            current, reason_lines = None, []
    if current:
        current.diagnostic = _join(reason_lines)
        found.append(current)
    return [f for f in found if f.diagnostic]


# Sendmail's non-MIME returns (sendmail/savemail.c): sections of addresses, then a transcript.
_SENDMAIL_SECTION = re.compile(
    r"-+\s*The following addresses? had (permanent fatal|transient non-fatal) errors\s*-+", re.IGNORECASE
)
_SENDMAIL_TRANSCRIPT = re.compile(r"-+\s*Transcript of session follows\s*-+", re.IGNORECASE)


def sendmail(text: str) -> list[Found]:
    sections = list(_SENDMAIL_SECTION.finditer(text))
    if not sections:
        return []
    transcript_match = _SENDMAIL_TRANSCRIPT.search(text)
    transcript = text[transcript_match.end() :] if transcript_match else ""
    found: list[Found] = []
    for section in sections:
        action = "failed" if section.group(1).lower().startswith("permanent") else "delayed"
        current: Found | None = None
        for line in _lines(text[section.end() :])[1:200]:
            stripped = line.strip()
            if not stripped or stripped.startswith("-----"):
                break
            reason = re.match(r"^\((?:reason|expanded from):?\s*(.*?)\)?$", stripped, re.IGNORECASE)
            if reason and current:
                if stripped.lower().startswith("(reason"):
                    current.diagnostic = reason.group(1).strip()
                continue
            address = re.match(rf"^<?({_ADDR})>?", stripped, re.IGNORECASE)
            if address:
                current = Found(address.group(1), "", action)
                found.append(current)
    for item in found:
        if not item.diagnostic and transcript:
            item.diagnostic = _transcript_reply(transcript, item.address)
        if not item.diagnostic and transcript:
            item.diagnostic = _join(_lines(transcript)[:6])
        item.remote_mta = _sendmail_remote(transcript)
    return found


def _transcript_reply(transcript: str, address: str) -> str:
    lines = _lines(transcript)[:400]
    lowered = address.lower()
    for index, line in enumerate(lines):
        if lowered in line.lower() and re.match(r"^\s*(?:<<<\s*)?[245]\d\d[ -]", line):
            return line.strip().removeprefix("<<<").strip()
        if lowered in line.lower() and line.lstrip().startswith(">>>"):
            for reply in lines[index + 1 : index + 4]:
                if re.match(r"^\s*<<<\s*[245]\d\d", reply):
                    return reply.strip().removeprefix("<<<").strip()
    return ""


def _sendmail_remote(transcript: str) -> str:
    match = re.search(r"while talking to ([a-z0-9.\-]+?)\.?:", transcript, re.IGNORECASE)
    return match.group(1).lower() if match else ""


# Exchange / Outlook notices (Exchange 2003-2019 and Exchange Online wording).
_EXCHANGE_ADMIN = re.compile(r"Diagnostic information for administrators:", re.IGNORECASE)
_EXCHANGE_2003 = re.compile(r"following recipient\(s\) (?:cannot|could not) be reached:", re.IGNORECASE)


def exchange(text: str) -> list[Found]:
    found: list[Found] = []
    admin = _EXCHANGE_ADMIN.search(text)
    if admin:
        lines = [line.strip() for line in _lines(text[admin.end() :])[:300]]
        server = re.search(r"Generating server:\s*(\S+)", text[admin.end() :], re.IGNORECASE)
        for index, line in enumerate(lines):
            address = re.fullmatch(rf"<?({_ADDR})>?", line, re.IGNORECASE)
            if not address:
                continue
            for reply in lines[index + 1 : index + 4]:
                if reply.startswith("#") or reply.lower().startswith("remote server returned"):
                    diagnostic = reply.strip("#").strip()
                    diagnostic = re.sub(r"^remote server returned\s*", "", diagnostic, flags=re.IGNORECASE)
                    diagnostic = diagnostic.strip("'\" ").removesuffix("#SMTP#").strip()
                    mta = remote_mta(text) or (server.group(1).lower() if server else "")
                    found.append(Found(address.group(1), diagnostic.strip("<> #"), remote_mta=mta))
                    break
    if found:
        return found
    legacy = _EXCHANGE_2003.search(text)
    if legacy:
        current: Found | None = None
        reason_lines: list[str] = []
        for line in _lines(text[legacy.end() :])[1:300]:
            match = re.match(rf"^\s+'?(?:[^'\n]*?<)?({_ADDR})>?'?\s+on\s+\d", line, re.IGNORECASE)
            if match:
                if current:
                    current.diagnostic = _join(reason_lines)
                current, reason_lines = Found(match.group(1), ""), []
                found.append(current)
            elif current and line.strip():
                reason_lines.append(line.strip())
            elif current and reason_lines:
                current.diagnostic = _join(reason_lines)
        if current and not current.diagnostic:
            current.diagnostic = _join(reason_lines)
    return found


# Google's plain-text notices (Gmail before its DSNs, Google Groups, Google Workspace relays).
_GOOGLE = re.compile(
    r"Delivery to the following recipients? (failed permanently|has been delayed|failed):", re.IGNORECASE
)


def google(text: str) -> list[Found]:
    match = _GOOGLE.search(text)
    if not match:
        return []
    action = "delayed" if "delayed" in match.group(1).lower() else "failed"
    addresses: list[str] = []
    for line in _lines(text[match.end() :])[1:50]:
        if not line.strip():
            if addresses:
                break
            continue
        address = re.fullmatch(rf"\s*<?({_ADDR})>?\s*", line, re.IGNORECASE)
        if not address:
            break
        addresses.append(address.group(1))
    details = re.search(r"Technical details of (?:permanent|temporary) failure:\s*(.*)", text, re.DOTALL | re.I)
    diagnostic = _join(_lines(details.group(1))[:12]) if details else ""
    return [Found(address, diagnostic, action, remote_mta(diagnostic)) for address in addresses]


# Lotus Notes / Domino, MDaemon and other "was not delivered to: ... because: ..." notices.
_NOT_DELIVERED = re.compile(
    r"(?:was not delivered to|could not be delivered to|did not reach the following recipient\(s\)|"
    r"delivery to the following recipients? failed|unable to deliver (?:your )?message to the following"
    r"(?: address(?:\(es\)|es)?)?)[:.]?",
    re.IGNORECASE,
)


def not_delivered_to(text: str) -> list[Found]:
    match = _NOT_DELIVERED.search(text)
    if not match:
        return []
    tail = text[match.end() :]
    each = _address_paragraphs(tail)
    if each:
        return each
    addresses = []
    for line in _lines(tail)[:30]:
        stripped = line.strip()
        if not stripped:
            if addresses:
                break
            continue
        address = re.fullmatch(rf"(?:[^<>]*<)?({_ADDR})>?[:,.]?", stripped, re.IGNORECASE)
        if not address:
            if addresses:
                break
            continue
        addresses.append(address.group(1))
    if not addresses:
        return []
    because = re.search(r"because:?\s*\n?(.*)", tail, re.IGNORECASE | re.DOTALL)
    body = because.group(1) if because else tail
    reason_lines = []
    for line in _lines(body.lstrip())[:12]:
        if not line.strip() and reason_lines:
            break
        if line.strip() and not any(a.lower() in line.lower() and len(line.strip()) < len(a) + 5 for a in addresses):
            reason_lines.append(line.strip())
    return [Found(address, _join(reason_lines)) for address in addresses]


_LONE_ADDRESS = re.compile(rf"(?:[^<>]*<)?({_ADDR})>?[:,.]?", re.IGNORECASE)
_LIST_END = re.compile(r"^(?:-{3,}|original message|below is|the original|message headers)", re.IGNORECASE)


def _address_paragraphs(tail: str) -> list[Found]:
    """A list in which every address has its own reason under it (GroupWise-style "addr" / "Reason: ..."
    paragraphs): each address gets its own lines, never the next one's. [] unless every address has some."""
    found: list[Found] = []
    for line in _lines(tail)[:80]:
        stripped = line.strip()
        address = _LONE_ADDRESS.fullmatch(stripped)
        if address:
            found.append(Found(address.group(1), ""))
        elif found and _LIST_END.match(stripped):
            break
        elif found and stripped and found[-1].diagnostic.count(" ") < 80:
            found[-1].diagnostic = f"{found[-1].diagnostic} {stripped}".strip()
    return found if len(found) > 1 and all(item.diagnostic for item in found) else []


# Also a mailing list's refusal of a post (Mailman: "Your message to the x@lists mailing-list was rejected for the
# following reasons:", the reasons in the next paragraph).
_AUTOMATICALLY_REJECTED = re.compile(
    rf"Your message to (?:the )?<?({_ADDR})>? (?:mailing[- ]list )?was (?:automatically )?rejected"
    rf"(?:\s+for\s+the\s+following\s+reasons?)?:?\s*(.*)",
    re.I | re.S,
)


def automatically_rejected(text: str) -> list[Found]:
    match = _AUTOMATICALLY_REJECTED.search(text)
    if not match:
        return []
    rest = match.group(2).strip().split("\n\n")[0]
    return [Found(match.group(1), _join(_lines(rest)[:6]))]


# One sentence that names the recipient, the reply below it: the DragonFly Mail Agent ("There was an error
# delivering your mail to <x>.", then "<host> did not like our RCPT TO:" and the reply), Amazon WorkMail and
# Exchange Online's short form ("Your message wasn't delivered to x because ..."), and similar small MTAs.
_SENTENCE = re.compile(
    rf"(?:error delivering (?:your )?(?:mail|message) to|(?:wasn't|was not|couldn't be|could not be) delivered to"
    rf"|message to) <?({_ADDR})>?(?: couldn't be delivered)?[.:]?",
    re.IGNORECASE,
)


def sentence(text: str) -> list[Found]:
    matches = list(_SENTENCE.finditer(text))
    if not matches or len({m.group(1).lower() for m in matches}) > 1:
        return []  # several recipients in sentences: leave them to the paragraph rules
    match = matches[0]
    rest = text[match.end() :]
    end = re.search(r"^\s*(?:message headers follow|the original message|original message)", rest, re.I | re.M)
    body = rest[: end.start()] if end else rest[:2000]
    reason_lines = [line.strip() for line in _lines(text[match.start() : match.end()] + body)[:20] if line.strip()]
    return [Found(match.group(1), _join(reason_lines))]


# "<address>, ERROR CODE :550 - reason" (Zoho) and "address: 550 reason" lines (OpenSMTPD's list, Courier):
# one line per recipient, each with its own reply, so one recipient's reason never runs into the next.
_ADDRESS_LINE = re.compile(
    rf"^\s{{0,4}}<?({_ADDR})>?\s*[,:]\s*((?:error code\s*:?\s*)?[245]\d\d\b.*)$", re.IGNORECASE | re.MULTILINE
)


def address_lines(text: str) -> list[Found]:
    found = []
    for match in _ADDRESS_LINE.finditer(text[:MAX_RULE_TEXT]):
        diagnostic = re.sub(r"^error code\s*:?\s*", "", match.group(2).strip(), flags=re.IGNORECASE)
        diagnostic = re.sub(r"^([245]\d\d)\s+-\s+", r"\1 ", diagnostic)  # Zoho: "550 - 5.1.1 ..."
        found.append(Found(match.group(1), diagnostic))
    return found


# Sendmail V5 and other transcript-only notices: "550 <x>... User unknown" as the MTA's own verdict line.
_TRANSCRIPT_VERDICT = re.compile(rf"^\s*([245]\d\d)[ -]<?({_ADDR})>?\.\.\.\s*(.*)$", re.IGNORECASE | re.MULTILINE)


# Sendmail's "addr... Deferred: Connection refused by host." (a warning: no reply code, the reason follows).
_TRANSCRIPT_DEFERRED = re.compile(rf"^\s*<?({_ADDR})>?\.\.\.\s*Deferred:?\s*(.*)$", re.IGNORECASE | re.MULTILINE)


def transcript_verdicts(text: str) -> list[Found]:
    """Sendmail's verdict lines ("554 addr... Service unavailable"), each with the remote server's own reply to
    that address when the transcript shows it ("<<< 552 <addr>... Mailbox full"): the verdict is Sendmail's
    summary, the reply is what the far end said."""
    text = text[:MAX_RULE_TEXT]
    found = []
    for match in _TRANSCRIPT_VERDICT.finditer(text):
        address, verdict = match.group(2), f"{match.group(1)} {match.group(3).strip()}"
        reply = _transcript_reply(text[: match.start()], address)
        action = "failed" if match.group(1)[0] == "5" else "delayed"
        found.append(Found(address, reply if reply.startswith(match.group(1)[0]) else verdict, action))
    for match in _TRANSCRIPT_DEFERRED.finditer(text):
        found.append(Found(match.group(1), f"Deferred: {match.group(2).strip()}", "delayed"))
    return found


MAX_RULE_TEXT = 64 * 1024

RULES = (
    exim,
    sendmail,
    exchange,
    google,
    angle_paragraphs,
    automatically_rejected,
    address_lines,
    transcript_verdicts,
    sentence,
    not_delivered_to,
)


def find(msg: Message, notice: str, *, bounce_like: bool) -> list[Found]:
    """The failed recipients of a non-DSN bounce, first rule that finds any wins; [] if none does.

    Each Found records the rule that found it in `rule` (for `matched_by`)."""
    text = split_notice(notice)
    found: list[Found] = []
    name = ""
    for rule in RULES:
        try:
            found = rule(text)
        except Exception:  # a rule tripping over odd input must not hide the others
            log.exception("bounce rule %s failed", rule.__name__)
            found = []
        if found:
            name = rule.__name__
            break
    if not found and bounce_like:
        found = [Found(address, context(text, address)) for address in _failed_recipients_header(msg)]
        name = "x-failed-recipients"
    if not found and bounce_like:
        found = _library_fallback(msg, text)
        name = "flufl.bounce"
    for item in found:
        item.rule = item.rule or name
    delayed_notice = bool(WARNING_RE.search(text[:4000]))
    result: dict[str, Found] = {}
    for item in found:
        item.address = item.address.strip(".'\"").lower()
        if not item.address or item.address.split("@")[0] in _NOISE_LOCALS:
            continue
        if delayed_notice and item.action == "failed" and rule_is_generic(item):
            item.action = "delayed"
        item.remote_mta = item.remote_mta or remote_mta(item.diagnostic)
        result.setdefault(item.address, item)
    return list(result.values())


def rule_is_generic(item: Found) -> bool:
    """A recipient found without a permanent (5xx) reply: a warning notice's recipients are delayed."""
    return not re.search(r"(?<![\d.])5\d\d[ -]|(?<![\d.])5\.\d{1,3}\.\d{1,3}", item.diagnostic)


def _failed_recipients_header(msg: Message) -> list[str]:
    value = mime.header(msg, "x-failed-recipients")
    return [match.group(0) for match in re.finditer(_ADDR, value, re.IGNORECASE)]


_LINE_STARTS_WITH_ADDRESS = re.compile(rf"^\s{{0,4}}<?{_ADDR}>?\s*[,:]", re.IGNORECASE)


def context(text: str, address: str) -> str:
    """The lines at and after the first mention of address, up to a blank line or a line that starts with
    another address (a list of recipients, one reply each: the next recipient's reason is not this one's)."""
    lines = _lines(text)
    for index, line in enumerate(lines[:2000]):
        if address.lower() in line.lower():
            block = [line]
            for follow in lines[index + 1 : index + 8]:
                if not follow.strip() or _LINE_STARTS_WITH_ADDRESS.match(follow):
                    break
                block.append(follow)
            return _join(block)
    return ""


def _with_text_headers(msg: Message) -> Message:
    """A copy whose top-level headers are plain str: flufl.bounce calls str methods on them, and compat32 hands
    back `email.header.Header` objects for headers with raw 8-bit bytes."""
    copy = deepcopy(msg)
    for name in dict.fromkeys(key.lower() for key in copy.keys()):
        values = [mime.unsurrogate(str(value)) for value in copy.get_all(name, [])]
        del copy[name]
        for value in values:
            copy[name] = value
    return copy


def _library_fallback(msg: Message, text: str) -> list[Found]:
    """flufl.bounce's detectors: the addresses only (it reports no reason), as (temporary, permanent) sets.

    Its pattern detectors read every body line once per pattern, so a large message is handed over as its
    headers plus the notice text only.
    """
    try:
        from flufl.bounce import all_failures
    except ImportError:  # the library is optional at run time; our own rules still work
        return []
    try:
        if len(msg.as_bytes()) > _LIBRARY_MAX_BYTES:
            small = Message()
            for name in list(msg.keys())[:100]:
                if name.lower() not in ("content-type", "content-transfer-encoding"):
                    small[name] = mime.header(msg, name)
            small.set_payload(text[:_LIBRARY_MAX_BYTES])
            msg = small
        else:
            msg = _with_text_headers(msg)
        temporary, permanent = all_failures(msg)
    except Exception:
        log.debug("flufl.bounce could not scan the message", exc_info=True)
        return []
    found = []
    for addresses, action in ((permanent, "failed"), (temporary, "delayed")):
        for raw in sorted(addresses):
            address = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
            if address and "@" in address:
                found.append(Found(address, context(text, address), action))
    return found
