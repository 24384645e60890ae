"""Parsing the addresses applications give us: a display name and an addr-spec, checked by email-validator."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from mail.errors import PostwerkError

# The sandbox's test addresses (Postwerk's sending.delivery.sandbox) live under the reserved `.test` name (RFC 6761
# §6.2: it never resolves, so no real mailbox can be there), which email-validator otherwise refuses as special-use.
SANDBOX_DOMAIN = "sandbox.postwerk.test"

_ANGLE = re.compile(r"^(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)


class AddressError(PostwerkError, ValueError):
    pass


@dataclass(frozen=True)
class Mailbox:
    display_name: str
    address: str  # normalised addr-spec; the domain in Unicode if it was given so
    local_part: str
    domain: str  # ASCII (IDNA) lower case: what MX lookups and domain checks use
    smtputf8: bool  # the local part needs SMTPUTF8 (RFC 6531) to travel

    @property
    def envelope_address(self) -> str:
        """The address as written in MAIL FROM / RCPT TO: ASCII domain, local part as given."""
        return f"{self.local_part}@{self.domain}"


def parse_mailbox(text: str) -> Mailbox:
    if not isinstance(text, str):
        raise AddressError("An address is required.")
    return _parse_mailbox(text)


# A submitted message's addresses are parsed at MAIL/RCPT and again when it is stored, and senders repeat from
# message to message; validation is the costly part and Mailbox is immutable, so remember recent answers.
@lru_cache(maxsize=4096)
def _parse_mailbox(text: str) -> Mailbox:
    if not text.strip():
        raise AddressError("An address is required.")
    # NUL, CR, LF and whatever else str.splitlines() breaks at (NEL, U+2028...): the email package would refuse
    # them in a header, so they must never reach it.
    if "\0" in text or text.splitlines() != [text]:
        raise AddressError("Line breaks are not allowed in an address.")
    text = text.strip()
    match = _ANGLE.match(text)
    if match:
        name, addr = match.group("name").strip(), match.group("addr").strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    else:
        name, addr = "", text
    try:
        sandbox = addr.rpartition("@")[2].lower() == SANDBOX_DOMAIN
        valid = validate_email(addr, check_deliverability=False, allow_smtputf8=True, test_environment=sandbox)
    except EmailNotValidError as exc:
        raise AddressError(f"{addr!r} is not a valid address: {exc}") from exc
    return Mailbox(
        display_name=name,
        address=valid.normalized,
        local_part=valid.local_part,
        domain=valid.ascii_domain.lower(),
        smtputf8=valid.smtputf8,
    )


def domain_matches(address_domain: str, domain: str, *, allow_subdomains: bool) -> bool:
    address_domain, domain = address_domain.lower().rstrip("."), domain.lower().rstrip(".")
    return address_domain == domain or (allow_subdomains and address_domain.endswith("." + domain))
