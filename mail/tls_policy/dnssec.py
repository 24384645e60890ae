"""DNSSEC-validated lookups for DANE (RFC 4033-4035, RFC 7672 §2.1), checked here rather than trusted from a
resolver's AD bit: signatures are verified with dnspython against keys that chain up, DS by DS, to a configured
trust anchor (POSTWERK_DNSSEC_TRUST_ANCHORS, the root's keys by default).

Every answer is `secure` (signatures chain to an anchor), `insecure` (provably or plausibly unsigned: DANE does
not apply), `bogus` (signed but wrong, or unsigned where it must be signed: never to be used, and never a reason
to fall back) or `error` (no answer at all). Queries go out with DO and CD set, so a validating upstream resolver
hands over even bogus data and this module reaches its own verdict.

Denial of existence: an NXDOMAIN or NODATA answer is secure when the NSEC/NSEC3 records that come with it are
validly signed and prove it: NSEC as RFC 4035 §5.4 says (the name covered and no wildcard at its closest encloser,
or the name's own NSEC without the type), NSEC3 with RFC 5155 §8's closest-encloser proof (an NSEC3 matching the
closest encloser, one covering the next closer name and one covering the wildcard at the closest encloser; or the
name's own NSEC3 without the type). Signed records that do not prove the denial make it bogus, never insecure.
An answer expanded from a wildcard is secure only with the proof that no closer name exists (RFC 4035 §5.3.4,
RFC 5155 §8.8). NSEC3 with more than NSEC3_MAX_ITERATIONS extra iterations, or only unknown hash algorithms, is
insecure (RFC 9276 §3.2, RFC 5155 §8.1), as is an NXDOMAIN whose next closer name falls in an opt-out span (RFC 5155
§6). Without any proof it is insecure, except under a trust anchor below the root (a zone the operator says is
signed), where it is bogus.
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
        sigs = _sigs_for(response.answer, rrset.name, rrset.rdtype)
        checked = _validate_rrset(rrset, sigs)
        if checked.security is Security.SECURE and sigs is not None:
            checked = _worst(checked, _expansion_proven(response, rrset.name, sigs))
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


def _expansion_proven(response: dns.message.Message, name: dns.name.Name, sigs: dns.rrset.RRset) -> Answer:
    """An answer its signature says was expanded from a wildcard (RRSIG labels fewer than the name's) needs
    proof that no closer name exists, or it could be a wildcard's records replayed over a name that has its own:
    an NSEC covering the name (RFC 4035 §5.3.4) or an NSEC3 covering the next closer name (RFC 5155 §8.8)."""
    labels = min(sig.labels for sig in sigs)  # type: ignore[attr-defined]
    depth = len(name.labels) - 1  # without the root label
    if labels >= depth or name.labels[0] == b"*":
        return Answer(Security.SECURE)
    next_closer = dns.name.Name(name.labels[-(labels + 2) :])
    for proof in (r for r in response.authority if r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)):
        checked = _validate_rrset(proof, _sigs_for(response.authority, proof.name, proof.rdtype))
        if checked.security is not Security.SECURE:
            continue
        if proof.rdtype == dns.rdatatype.NSEC:
            if any(_covers(proof.name, rdata.next, name) for rdata in proof):  # type: ignore[attr-defined]
                return Answer(Security.SECURE)
        elif _Nsec3Chain([proof]).covering(next_closer) is not None:
            return Answer(Security.SECURE)
    return Answer(
        Security.BOGUS, detail=f"{name} was answered from a wildcard without proof that {next_closer} does not exist"
    )


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


# RFC 9276 §3.2: validators may treat NSEC3 with more extra iterations than this as insecure (BIND, Unbound: 150).
NSEC3_MAX_ITERATIONS = 150


@dataclass(frozen=True)
class Verdict:
    security: Security
    detail: str = ""


def _nsec3_hash_label(name: dns.name.Name, rdata: dns.rdata.Rdata) -> str:
    return dns.dnssec.nsec3_hash(name, rdata.salt, rdata.iterations, rdata.algorithm).lower()  # type: ignore[attr-defined]


def _wildcard(encloser: dns.name.Name) -> dns.name.Name:
    return dns.name.Name((b"*", *encloser.labels))


def _nsec_denies(proofs: list[dns.rrset.RRset], qname: dns.name.Name, qtype: int, nxdomain: bool) -> Verdict:
    """RFC 4035 §5.4 with NSEC records (already validated)."""
    records = [(proof.name, rdata) for proof in proofs for rdata in proof]
    if not nxdomain:
        for owner, rdata in records:
            if owner == qname:
                if _has_type(rdata.windows, qtype) or _has_type(rdata.windows, dns.rdatatype.CNAME):  # type: ignore[attr-defined]
                    return Verdict(Security.BOGUS, f"the NSEC of {qname} says the type exists")
                return Verdict(Security.SECURE)
            if _covers(owner, rdata.next, qname) and rdata.next.is_subdomain(qname):  # type: ignore[attr-defined]
                return Verdict(Security.SECURE)  # an empty non-terminal: names below it, no data at it
        return Verdict(Security.BOGUS, f"no NSEC record is {qname}'s own")
    covering = next(((o, r) for o, r in records if _covers(o, r.next, qname)), None)  # type: ignore[attr-defined]
    if covering is None:
        return Verdict(Security.BOGUS, f"no NSEC record covers {qname}")
    owner, rdata = covering
    # The closest encloser: the longest ancestor qname shares with either end of the covering NSEC.
    common = max(qname.fullcompare(owner)[2], qname.fullcompare(rdata.next)[2])  # type: ignore[attr-defined]
    wildcard = _wildcard(dns.name.Name(qname.labels[-common:]))
    if not any(_covers(o, r.next, wildcard) for o, r in records):  # type: ignore[attr-defined]
        return Verdict(Security.BOGUS, f"no NSEC record proves that {wildcard} does not exist")
    return Verdict(Security.SECURE)


class _Nsec3Chain:
    """The NSEC3 records of one response, to ask which name's hash they match or cover (RFC 5155 §8.2, §8.3)."""

    def __init__(self, proofs: list[dns.rrset.RRset]) -> None:
        self.records = [
            (proof.name.labels[0].decode().lower(), proof.name.parent(), rdata)
            for proof in proofs
            for rdata in proof
            if rdata.algorithm == 1  # type: ignore[attr-defined]  # SHA-1, the only one defined
        ]

    def _hash(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> str:
        return _nsec3_hash_label(name, rdata)

    def matching(self, name: dns.name.Name) -> dns.rdata.Rdata | None:
        for owner_hash, zone, rdata in self.records:
            if name.is_subdomain(zone) and owner_hash == self._hash(name, rdata):
                return rdata
        return None

    def covering(self, name: dns.name.Name) -> dns.rdata.Rdata | None:
        for owner_hash, zone, rdata in self.records:
            if not name.is_subdomain(zone):
                continue
            wanted = self._hash(name, rdata)
            nxt = base64.b32encode(rdata.next).decode().translate(_TO_B32HEX)  # type: ignore[attr-defined]
            if (owner_hash < wanted < nxt) or (nxt <= owner_hash and (wanted > owner_hash or wanted < nxt)):
                return rdata
        return None

    def closest_encloser(self, qname: dns.name.Name) -> tuple[dns.name.Name, dns.rdata.Rdata] | Verdict:
        """The closest encloser proof (RFC 5155 §8.3): the closest encloser and the NSEC3 covering the next
        closer name, or why there is none."""
        zones = {zone for _, zone, _ in self.records}
        encloser = qname.parent()
        while True:
            found = self.matching(encloser)
            if found is not None:
                break
            if encloser in zones or encloser == dns.name.root:
                return Verdict(Security.BOGUS, f"no NSEC3 record matches a closest encloser of {qname}")
            encloser = encloser.parent()
        windows = found.windows  # type: ignore[attr-defined]
        if _has_type(windows, dns.rdatatype.DNAME) or (
            _has_type(windows, dns.rdatatype.NS) and not _has_type(windows, dns.rdatatype.SOA)
        ):
            return Verdict(Security.BOGUS, f"the closest encloser {encloser} of {qname} is a delegation or DNAME")
        next_closer = dns.name.Name(qname.labels[-len(encloser.labels) - 1 :])
        cover = self.covering(next_closer)
        if cover is None:
            return Verdict(Security.BOGUS, f"no NSEC3 record covers {next_closer}, the next closer name of {qname}")
        return encloser, cover


def _nsec3_denies(proofs: list[dns.rrset.RRset], qname: dns.name.Name, qtype: int, nxdomain: bool) -> Verdict:
    """RFC 5155 §8 with NSEC3 records (already validated)."""
    chain = _Nsec3Chain(proofs)
    if not chain.records:
        return Verdict(Security.INSECURE, f"the NSEC3 records for {qname} use only unknown hash algorithms")
    if any(rdata.iterations > NSEC3_MAX_ITERATIONS for _, _, rdata in chain.records):  # type: ignore[attr-defined]
        return Verdict(Security.INSECURE, f"the NSEC3 records for {qname} use too many iterations (RFC 9276)")
    own = chain.matching(qname)
    if nxdomain and own is not None:
        return Verdict(Security.BOGUS, f"an NSEC3 record says {qname} exists, in an answer that it does not")
    if not nxdomain and own is not None:  # §8.5, §8.6: the name's own NSEC3 without the type
        if _has_type(own.windows, qtype) or _has_type(own.windows, dns.rdatatype.CNAME):  # type: ignore[attr-defined]
            return Verdict(Security.BOGUS, f"the NSEC3 record of {qname} says the type exists")
        return Verdict(Security.SECURE)
    proof = chain.closest_encloser(qname)
    if isinstance(proof, Verdict):
        return proof
    encloser, cover = proof
    opt_out = bool(cover.flags & 1)  # type: ignore[attr-defined]
    wildcard = _wildcard(encloser)
    if not nxdomain:
        if qtype == dns.rdatatype.DS and opt_out:  # §8.6: an unsigned delegation in an opt-out span
            return Verdict(Security.SECURE)
        matched = chain.matching(wildcard)  # §8.7: a wildcard that has no such type
        if matched is None or _has_type(matched.windows, qtype):  # type: ignore[attr-defined]
            return Verdict(Security.BOGUS, f"the NSEC3 records do not prove that {qname} has no such type")
        return Verdict(Security.SECURE)
    if chain.covering(wildcard) is None:  # §8.4
        return Verdict(Security.BOGUS, f"no NSEC3 record proves that {wildcard} does not exist")
    if opt_out:
        return Verdict(Security.INSECURE, f"{qname} falls in an NSEC3 opt-out span (it may be an unsigned delegation)")
    return Verdict(Security.SECURE)


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
    if result.security is Security.SECURE:
        nsec3 = [p for p in proofs if p.rdtype == dns.rdatatype.NSEC3]
        verdict = (
            _nsec3_denies(nsec3, qname, qtype, nxdomain) if nsec3 else _nsec_denies(proofs, qname, qtype, nxdomain)
        )
        if verdict.security is not Security.SECURE:
            return Answer(verdict.security, None, f"{what}: {verdict.detail}", ttl)
    detail = result.detail or f"{what} does not exist (signed proof)"
    return Answer(result.security, None, detail, min(ttl, result.ttl))
