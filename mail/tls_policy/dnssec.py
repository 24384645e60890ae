"""DNSSEC-validated lookups for DANE (RFC 4033-4035, RFC 7672 §2.1), checked here rather than trusted from a
resolver's AD bit: signatures are verified with dnspython against keys that chain up, DS by DS, to a configured
trust anchor (POSTWERK_DNSSEC_TRUST_ANCHORS, the root's keys by default).

Every answer is `secure` (signatures chain to an anchor), `insecure` (provably or plausibly unsigned: DANE does
not apply), `bogus` (signed but wrong, or unsigned where it must be signed: never to be used, and never a reason
to fall back) or `error` (no answer at all). Queries go out with DO and CD set, so a validating upstream resolver
hands over even bogus data and this module reaches its own verdict.

Denial of existence: an NXDOMAIN or NODATA answer is secure when the NSEC/NSEC3 records that come with it are
validly signed and cover the name (the closest-encloser proof of NSEC3 is not checked). Without any proof it is
insecure, except under a trust anchor below the root (a zone the operator says is signed), where it is bogus.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.resolver
import dns.rrset
from django.conf import settings

from mail import dns as mail_dns

_TO_B32HEX = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghijklmnopqrstuv")


# What dnspython (with cryptography) verifies: RSA/SHA-1 (RFC 8624 still asks validators to accept it), RSA/SHA-2,
# ECDSA and EdDSA.
_ALGORITHMS = {5, 7, 8, 10, 13, 14, 15, 16}


class Security(StrEnum):
    SECURE = "secure"
    INSECURE = "insecure"
    BOGUS = "bogus"
    ERROR = "error"


@dataclass(frozen=True)
class Answer:
    security: Security
    rrset: dns.rrset.RRset | None = None  # None: the name or the type does not exist (or no answer)
    detail: str = ""
    ttl: float = 300.0


_cache: dict[tuple[str, int], tuple[float, Answer]] = {}
_lock = threading.Lock()
# Bogus answers are kept a little, so a broken zone is not asked again for every message.
BOGUS_TTL = 60.0


def clear_caches() -> None:
    with _lock:
        _cache.clear()


def parse_anchor(record: str) -> tuple[dns.name.Name, dns.rdata.Rdata]:
    """One trust anchor in presentation format (`zone. DS 20326 8 2 <hex>` or `zone. DNSKEY 257 3 8 <base64>`);
    raises ValueError (dns.exception.DNSException) when it is not one."""
    tokens = record.split()
    if len(tokens) < 3:
        raise ValueError(f"not a DS or DNSKEY record: {record!r}")
    owner = dns.name.from_text(tokens[0])
    i = 1
    while i < len(tokens) and (tokens[i].isdigit() or tokens[i].upper() == "IN"):
        i += 1  # an optional TTL and class
    if i >= len(tokens) or tokens[i].upper() not in ("DS", "DNSKEY"):
        raise ValueError(f"not a DS or DNSKEY record: {record!r}")
    rdtype = dns.rdatatype.from_text(tokens[i].upper())
    return owner, dns.rdata.from_text(dns.rdataclass.IN, rdtype, " ".join(tokens[i + 1 :]))


_anchor_memo: dict[tuple[str, ...], dict[dns.name.Name, list[dns.rdata.Rdata]]] = {}


def trust_anchors() -> dict[dns.name.Name, list[dns.rdata.Rdata]]:
    key = tuple(settings.POSTWERK_DNSSEC_TRUST_ANCHORS)
    found = _anchor_memo.get(key)
    if found is None:
        found = {}
        for record in key:
            owner, rdata = parse_anchor(record)
            found.setdefault(owner, []).append(rdata)
        _anchor_memo[key] = found
    return found


def _must_be_signed(name: dns.name.Name) -> bool:
    """Under an anchor below the root the operator has said the zone is signed: no signature there is bogus."""
    return any(zone != dns.name.root and name.is_subdomain(zone) for zone in trust_anchors())


def _resolver() -> dns.resolver.Resolver:
    return mail_dns.resolver(dnssec=True)


def query(name: dns.name.Name, rdtype: int) -> dns.message.Message | str:
    """The whole response (with its RRSIG, NSEC and NSEC3 records), or why there is none."""
    try:
        answer = _resolver().resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN as exc:
        response = exc.response(name) if name in exc.qnames() else None
        if response is None:
            return f"{name} does not exist, and the answer could not be read"
        return response
    except dns.exception.DNSException as exc:
        return f"DNS lookup of {name} {dns.rdatatype.to_text(rdtype)} failed: {exc}"
    return answer.response


def lookup(name: str | dns.name.Name, rdtype: str | int) -> Answer:
    """The validated answer for name/type, cached for its TTL."""
    qname = name if isinstance(name, dns.name.Name) else dns.name.from_text(name)
    qtype = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else dns.rdatatype.RdataType.make(rdtype)
    key = (qname.to_text().lower(), int(qtype))
    with _lock:
        hit = _cache.get(key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    response = query(qname, qtype)
    if isinstance(response, str):
        return Answer(Security.ERROR, detail=response)
    answer = validate_response(response, qname, qtype)
    _remember(key, answer)
    return answer


def _remember(key: tuple[str, int], answer: Answer) -> None:
    if answer.security is Security.ERROR:
        return
    ttl = BOGUS_TTL if answer.security is Security.BOGUS else answer.ttl
    ttl = max(0.0, min(float(ttl), float(settings.POSTWERK_MX_CACHE_MAX_TTL)))
    if ttl:
        with _lock:
            _cache[key] = (time.monotonic() + ttl, answer)


def _sigs_for(section: list[dns.rrset.RRset], name: dns.name.Name, covers: int) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.rdtype == dns.rdatatype.RRSIG and rrset.name == name and rrset.covers == covers:
            return rrset
    return None


def validate_response(response: dns.message.Message, qname: dns.name.Name, qtype: int) -> Answer:
    """Validate a response to qname/qtype: the answer's RRsets (a CNAME chain included), or its denial."""
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Answer(
            Security.ERROR, detail=f"{qname} {dns.rdatatype.to_text(qtype)}: {dns.rcode.to_text(response.rcode())}"
        )
    data = [r for r in response.answer if r.rdtype != dns.rdatatype.RRSIG]
    target = next((r for r in data if r.rdtype == qtype), None)
    if response.rcode() == dns.rcode.NXDOMAIN or target is None:
        last = data[-1][0].target if data and data[-1].rdtype == dns.rdatatype.CNAME else qname  # type: ignore[attr-defined]
        denied = _validate_denial(response, last, qtype, nxdomain=response.rcode() == dns.rcode.NXDOMAIN)
        for rrset in data:  # a CNAME that led to nothing must be as secure as the denial
            denied = _worst(denied, _validate_rrset(rrset, _sigs_for(response.answer, rrset.name, rrset.rdtype)))
        return denied
    result = Answer(Security.SECURE, target, ttl=target.ttl)
    for rrset in data:
        checked = _validate_rrset(rrset, _sigs_for(response.answer, rrset.name, rrset.rdtype))
        result = _worst(result, checked)
    return Answer(result.security, target, result.detail, min(result.ttl, target.ttl))


_ORDER = {Security.SECURE: 0, Security.INSECURE: 1, Security.ERROR: 2, Security.BOGUS: 3}


def _worst(a: Answer, b: Answer) -> Answer:
    chosen = b if _ORDER[b.security] > _ORDER[a.security] else a
    return Answer(chosen.security, a.rrset, chosen.detail, min(a.ttl, b.ttl))


def _validate_rrset(rrset: dns.rrset.RRset, sigs: dns.rrset.RRset | None) -> Answer:
    what = f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}"
    if not sigs:
        if _must_be_signed(rrset.name):
            return Answer(Security.BOGUS, detail=f"{what} is not signed, in a zone that must be", ttl=rrset.ttl)
        return Answer(Security.INSECURE, detail=f"{what} is not signed", ttl=rrset.ttl)
    if not any(sig.algorithm in _ALGORITHMS for sig in sigs):  # type: ignore[attr-defined]
        # RFC 4035 §5.2: signatures only in algorithms we cannot check make the answer insecure, not bogus.
        return Answer(Security.INSECURE, detail=f"{what} is signed only with algorithms not supported", ttl=rrset.ttl)
    signer = sigs[0].signer  # type: ignore[attr-defined]
    if not rrset.name.is_subdomain(signer):
        return Answer(Security.BOGUS, detail=f"{what} is signed by {signer}, which is not its zone")
    keys = zone_keys(signer)
    if keys.security is not Security.SECURE or keys.rrset is None:
        return Answer(keys.security, detail=keys.detail, ttl=keys.ttl)
    try:
        dns.dnssec.validate(rrset, sigs, {signer: keys.rrset}, now=time.time())
    except dns.dnssec.ValidationFailure as exc:
        return Answer(Security.BOGUS, detail=f"the signature of {what} does not validate: {exc}")
    return Answer(Security.SECURE, ttl=min(rrset.ttl, keys.ttl))


def _anchor_matches(zone: dns.name.Name, key: dns.rdata.Rdata, anchors: list[dns.rdata.Rdata]) -> bool:
    for anchor in anchors:
        if anchor.rdtype == dns.rdatatype.DNSKEY and anchor == key:
            return True
        if anchor.rdtype == dns.rdatatype.DS:
            try:
                if dns.dnssec.make_ds(zone, key, anchor.digest_type, validating=True) == anchor:  # type: ignore[attr-defined]
                    return True
            except (dns.dnssec.UnsupportedAlgorithm, ValueError):
                continue
    return False


def zone_keys(zone: dns.name.Name) -> Answer:
    """The zone's DNSKEY RRset, secure when one of its keys matches a trust anchor or the DS its parent signed,
    and that key signed the set (RFC 4035 §5.2)."""
    key = (zone.to_text().lower(), int(dns.rdatatype.DNSKEY))
    with _lock:
        hit = _cache.get(key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    answer = _zone_keys(zone)
    _remember(key, answer)
    return answer


def _zone_keys(zone: dns.name.Name) -> Answer:
    anchors = trust_anchors().get(zone)
    if anchors is None:
        if zone == dns.name.root:
            return Answer(Security.INSECURE, detail="no trust anchor configured for the root")
        ds = lookup(zone, dns.rdatatype.DS)
        if ds.security is not Security.SECURE:
            return Answer(ds.security, detail=f"DS of {zone}: {ds.detail}", ttl=ds.ttl)
        if ds.rrset is None:
            return Answer(Security.INSECURE, detail=f"{zone} is an unsigned delegation (no DS)", ttl=ds.ttl)
        anchors = list(ds.rrset)
    response = query(zone, dns.rdatatype.DNSKEY)
    if isinstance(response, str):
        return Answer(Security.ERROR, detail=response)
    dnskeys = next((r for r in response.answer if r.rdtype == dns.rdatatype.DNSKEY and r.name == zone), None)
    if dnskeys is None:
        return Answer(Security.BOGUS, detail=f"{zone} has a DS or trust anchor but no DNSKEY")
    trusted = [k for k in dnskeys if _anchor_matches(zone, k, anchors)]
    if not trusted:
        return Answer(Security.BOGUS, detail=f"no DNSKEY of {zone} matches its DS or trust anchor")
    sigs = _sigs_for(response.answer, zone, dns.rdatatype.DNSKEY)
    if not sigs:
        return Answer(Security.BOGUS, detail=f"the DNSKEY set of {zone} is not signed")
    trusted_set = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.DNSKEY)
    for k in trusted:
        trusted_set.add(k)
    try:
        dns.dnssec.validate(dnskeys, sigs, {zone: trusted_set}, now=time.time())
    except dns.dnssec.ValidationFailure as exc:
        return Answer(Security.BOGUS, detail=f"the DNSKEY set of {zone} does not validate: {exc}")
    return Answer(Security.SECURE, dnskeys, ttl=dnskeys.ttl)


# --- denial of existence (RFC 4035 §5.4, RFC 5155 §8) ----------------------------------------------------


def _has_type(windows: object, rdtype: int) -> bool:
    for window, bitmap in windows:  # type: ignore[attr-defined]
        if window != rdtype // 256:
            continue
        index, bit = divmod(rdtype % 256, 8)
        return index < len(bitmap) and bool(bitmap[index] & (0x80 >> bit))
    return False


def _covers(owner: dns.name.Name, nxt: dns.name.Name, name: dns.name.Name) -> bool:
    if owner < nxt:
        return owner < name < nxt
    return name > owner or name < nxt  # the last NSEC of the zone wraps around to the apex


def _nsec3_hash_label(name: dns.name.Name, rdata: dns.rdata.Rdata) -> str:
    return dns.dnssec.nsec3_hash(name, rdata.salt, rdata.iterations, rdata.algorithm).lower()  # type: ignore[attr-defined]


def _proof_holds(proof: dns.rrset.RRset, qname: dns.name.Name, qtype: int, nxdomain: bool) -> bool:
    for rdata in proof:
        if proof.rdtype == dns.rdatatype.NSEC:
            if nxdomain and _covers(proof.name, rdata.next, qname):  # type: ignore[attr-defined]
                return True
            if not nxdomain and proof.name == qname and not _has_type(rdata.windows, qtype):  # type: ignore[attr-defined]
                return True
        else:  # NSEC3: owner is <hash>.<zone>
            owner_hash = proof.name.labels[0].decode().lower()
            wanted = _nsec3_hash_label(qname, rdata)
            nxt = base64.b32encode(rdata.next).decode().translate(_TO_B32HEX)  # type: ignore[attr-defined]
            if not nxdomain and owner_hash == wanted and not _has_type(rdata.windows, qtype):  # type: ignore[attr-defined]
                return True
            if nxdomain or rdata.flags & 1:  # type: ignore[attr-defined]  # opt-out covers unsigned delegations
                if (owner_hash < wanted < nxt) or (nxt <= owner_hash and (wanted > owner_hash or wanted < nxt)):
                    return True
    return False


def _validate_denial(response: dns.message.Message, qname: dns.name.Name, qtype: int, *, nxdomain: bool) -> Answer:
    soa = next((r for r in response.authority if r.rdtype == dns.rdatatype.SOA), None)
    ttl = float(soa[0].minimum if soa is not None else 300)  # type: ignore[attr-defined]
    proofs = [r for r in response.authority if r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)]
    what = f"{qname} {dns.rdatatype.to_text(qtype)}"
    if not proofs:
        if _must_be_signed(qname):
            return Answer(Security.BOGUS, detail=f"no signed proof that {what} does not exist", ttl=ttl)
        return Answer(Security.INSECURE, detail=f"{what} does not exist (unsigned answer)", ttl=ttl)
    result = Answer(Security.SECURE, ttl=ttl)
    for proof in proofs:
        result = _worst(result, _validate_rrset(proof, _sigs_for(response.authority, proof.name, proof.rdtype)))
    if result.security is Security.SECURE and not any(_proof_holds(p, qname, qtype, nxdomain) for p in proofs):
        return Answer(Security.BOGUS, detail=f"the NSEC/NSEC3 records do not prove that {what} does not exist", ttl=ttl)
    detail = result.detail or f"{what} does not exist (signed proof)"
    return Answer(result.security, None, detail, min(ttl, result.ttl))
