"""DNS lookups for the checks: TXT strings concatenated, and DNS exceptions mapped to missing or error.

A check must tell "the record is not there" (NXDOMAIN, NODATA: the owner has to act) from "DNS did not
answer" (timeout, SERVFAIL: try again later), so every lookup returns a ``Lookup`` instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import dns.exception
import dns.name
import dns.resolver

from mail import dns as postwerk_dns


class LookupStatus(StrEnum):
    FOUND = "found"
    MISSING = "missing"  # NXDOMAIN or no records of this type (NODATA)
    ERROR = "error"  # timeout, SERVFAIL, or any other failure to get an answer


@dataclass(frozen=True)
class Lookup:
    name: str
    rtype: str
    status: LookupStatus
    records: list[str] = field(default_factory=list)  # presentation text; TXT as decoded, joined strings
    detail: str = ""  # why it is missing or failed, for messages

    @property
    def found(self) -> bool:
        return self.status is LookupStatus.FOUND

    @property
    def failed(self) -> bool:
        return self.status is LookupStatus.ERROR


def normalize(name: str) -> str:
    return name.strip().rstrip(".").lower()


def txt_string(strings: tuple[bytes, ...] | list[bytes]) -> str:
    """One TXT record's text: its character-strings concatenated with nothing between them.

    RFC 7208 §3.3 (SPF), RFC 6376 §3.6.2.2 (DKIM) and RFC 7489 §6.1 (DMARC) all say a record split over
    several strings is read as their concatenation.
    """
    return b"".join(strings).decode("utf-8", errors="replace")


def lookup(name: str, rtype: str) -> Lookup:
    """Records of ``rtype`` at ``name`` through the configured resolver (CNAMEs followed, except for CNAME)."""
    name = normalize(name)
    try:
        answer = postwerk_dns.resolver().resolve(name, rtype, search=False)
    except dns.resolver.NXDOMAIN:
        return Lookup(name, rtype, LookupStatus.MISSING, detail=f"{name} does not exist (NXDOMAIN)")
    except dns.resolver.NoAnswer:
        return Lookup(name, rtype, LookupStatus.MISSING, detail=f"{name} has no {rtype} record")
    except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong) as exc:
        return Lookup(name, rtype, LookupStatus.MISSING, detail=f"{name!r} is not a valid DNS name: {exc}")
    except dns.exception.Timeout:
        return Lookup(name, rtype, LookupStatus.ERROR, detail=f"DNS lookup of {rtype} {name} timed out")
    except dns.resolver.NoNameservers as exc:
        # Every server answered SERVFAIL (or REFUSED): the zone is broken or unreachable right now.
        return Lookup(name, rtype, LookupStatus.ERROR, detail=f"DNS servers failed for {rtype} {name}: {exc}")
    except dns.exception.DNSException as exc:
        return Lookup(name, rtype, LookupStatus.ERROR, detail=f"DNS lookup of {rtype} {name} failed: {exc}")
    rtype_upper = rtype.upper()
    records: list[str] = []
    for rdata in answer:
        if rtype_upper == "TXT":
            records.append(txt_string(rdata.strings))
        elif rtype_upper in ("A", "AAAA"):
            records.append(rdata.address)
        elif rtype_upper == "MX":
            records.append(normalize(rdata.exchange.to_text()))
        elif rtype_upper in ("CNAME", "PTR"):
            records.append(normalize(rdata.target.to_text()))
        else:
            records.append(rdata.to_text())
    return Lookup(name, rtype, LookupStatus.FOUND, records=records)


def lookup_txt(name: str) -> Lookup:
    return lookup(name, "TXT")
