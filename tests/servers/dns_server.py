"""Authoritative loopback DNS server for tests, built only on dnspython.

The server answers for every name it has data for (there are no zone cuts):
records added with :meth:`DnsServer.add` are served with the AA flag, names
with no data below them get NXDOMAIN, and names that exist without the asked
type get NOERROR/NODATA. Faults (SERVFAIL, silent drop) can be injected per
name so resolver error handling can be exercised against real sockets.

DNSSEC: :meth:`DnsServer.sign_zone` signs everything at and below a name with a
fresh key (dnspython's dnssec module). Queries with the DO bit then get RRSIGs
with each answer, the zone's DNSKEY set, and NSEC records (or, with ``nsec3=True``,
NSEC3 records: RFC 5155's closest-encloser proof) proving NXDOMAIN and NODATA;
:meth:`DnsServer.tamper` makes the signatures of one name/type invalid and
``omit_proof`` leaves parts of a denial out (an unproven denial). A ``*.<name>``
record answers for the names that do not exist below it (RFC 4592), with the
proof that no closer name exists (``omit_proof`` "wildcard-expansion" leaves it out).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from types import TracebackType

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["DnsServer"]

log = logging.getLogger(__name__)

# Bounded so a CNAME loop in test data cannot spin the server thread.
_MAX_CNAME_CHAIN = 16
# Small enough that stop() returns quickly, large enough not to busy-loop.
_POLL_INTERVAL = 0.1
_TXT_CHUNK = 255
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32HEX = "0123456789ABCDEFGHIJKLMNOPQRSTUV"


def _to_name(name: str | dns.name.Name) -> dns.name.Name:
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    # from_text() treats a name without a trailing dot as relative to the
    # origin, which defaults to the root, so both spellings end up absolute.
    return dns.name.from_text(name)


def _to_rdtype(rtype: str | dns.rdatatype.RdataType) -> dns.rdatatype.RdataType:
    if isinstance(rtype, str):
        return dns.rdatatype.from_text(rtype.upper())
    return dns.rdatatype.RdataType.make(rtype)


def _split_txt(value: str) -> list[bytes]:
    raw = value.encode("utf-8")
    if not raw:
        return [b""]
    return [raw[i : i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)]


def _qname_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


class DnsServer:
    """Authoritative DNS server on ``host`` serving UDP and TCP on one port.

    ``queries`` collects ``(qname, qtype, transport)`` tuples such as
    ``("example.test", "MX", "udp")``; qnames are lower-cased without the
    trailing dot. Dropped and SERVFAILed queries are recorded too.
    """

    def __init__(self, host: str = "127.0.0.1", *, negative_ttl: int = 60) -> None:
        self.host = host
        self.port = 0
        self.negative_ttl = negative_ttl
        self.queries: list[tuple[str, str, str]] = []
        self._lock = threading.RLock()
        self._data: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        # Faults keyed by (name, rtype); rtype None means "every type".
        self._servfail: set[tuple[dns.name.Name, dns.rdatatype.RdataType | None]] = set()
        self._drop: set[tuple[dns.name.Name, dns.rdatatype.RdataType | None]] = set()
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        # Signed zones: origin -> (private key, DNSKEY rdata); names whose signatures are served broken.
        self._signed: dict[dns.name.Name, tuple[ec.EllipticCurvePrivateKey, dns.rdata.Rdata]] = {}
        self._tampered: set[tuple[dns.name.Name, dns.rdatatype.RdataType]] = set()
        # Zones denied with NSEC3: origin -> (salt, iterations).
        self._nsec3_params: dict[dns.name.Name, tuple[bytes, int]] = {}
        # Parts of a denial to leave out: "closest-encloser", "next-closer", "wildcard" (NSEC3) or "wildcard"
        # (NSEC): answers that are signed but do not prove what they deny.
        self.omit_proof: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> DnsServer:
        if self._udp is not None:
            raise RuntimeError("DnsServer already started")
        self._stopping.clear()
        self._udp, self._tcp = self._bind_pair()
        self.port = self._udp.getsockname()[1]
        for target, name in ((self._udp_loop, "udp"), (self._tcp_accept_loop, "tcp-accept")):
            thread = threading.Thread(target=target, name=f"dns-{name}-{self.port}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        # The kernel picks a free UDP port but knows nothing about TCP, so
        # the same number may already be taken there; just try another one.
        last_error: OSError | None = None
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
                tcp.listen(64)
            except OSError as exc:
                udp.close()
                tcp.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
                continue
            udp.settimeout(_POLL_INTERVAL)
            tcp.settimeout(_POLL_INTERVAL)
            return udp, tcp
        raise RuntimeError(f"could not bind UDP+TCP on one port on {self.host}") from last_error

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            # shutdown() wakes a thread blocked in recv() on this socket.
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ zone data

    def add(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        """Add one record; ``value`` is presentation text (``"10 mx.example.test."``).

        For TXT a plain string of any length is split into <=255-byte
        character-strings; a value starting with ``"`` is parsed as
        presentation format instead, so pre-split/escaped values also work.
        """
        owner = _to_name(name)
        rdtype = _to_rdtype(rtype)
        rdata: dns.rdata.Rdata
        if rdtype == dns.rdatatype.TXT and not value.lstrip().startswith('"'):
            rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, _split_txt(value))
        else:
            # relativize=False keeps targets like "mx1.example.test" absolute
            # instead of turning them into names relative to the root.
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False)
        with self._lock:
            node = self._data.setdefault(owner, {})
            rrset = node.get(rdtype)
            if rrset is None:
                rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
                node[rdtype] = rrset
            rrset.add(rdata, ttl)

    def remove(self, name: str, rtype: str | None = None) -> None:
        owner = _to_name(name)
        with self._lock:
            node = self._data.get(owner)
            if node is None:
                return
            if rtype is None:
                del self._data[owner]
                return
            node.pop(_to_rdtype(rtype), None)
            if not node:
                del self._data[owner]

    def clear(self) -> None:
        """Forget all records, injected faults, signed zones and the query log."""
        with self._lock:
            self._data.clear()
            self._servfail.clear()
            self._drop.clear()
            self._signed.clear()
            self._tampered.clear()
            self._nsec3_params.clear()
            self.omit_proof.clear()
            self.queries.clear()

    # ------------------------------------------------------------------ DNSSEC

    def sign_zone(self, origin: str, *, nsec3: bool = False, salt: bytes = b"", iterations: int = 0) -> str:
        """Sign ``origin`` and every name below it (ECDSA P-256, algorithm 13); returns the zone's DS record in
        presentation format (``origin. DS ...``), to be configured as a trust anchor. ``nsec3``: deny with NSEC3
        (SHA-1, the given salt and extra iterations) instead of NSEC."""
        import dns.dnssec  # noqa: PLC0415 - only tests that sign need it

        zone = _to_name(origin)
        key = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, flags=257)
        with self._lock:
            self._signed[zone] = (key, dnskey)
            if nsec3:
                self._nsec3_params[zone] = (salt, iterations)
            node = self._data.setdefault(zone, {})
            rrset = dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
            rrset.add(dnskey, 3600)
            node[dns.rdatatype.DNSKEY] = rrset
        ds = dns.dnssec.make_ds(zone, dnskey, "SHA256")
        return f"{zone.to_text()} DS {ds.to_text()}"

    def tamper(self, name: str, rtype: str) -> None:
        """Serve signatures for ``name``/``rtype`` that do not validate (a bogus answer)."""
        with self._lock:
            self._tampered.add((_to_name(name), _to_rdtype(rtype)))

    def _zone_of(self, name: dns.name.Name) -> dns.name.Name | None:
        candidates = [zone for zone in self._signed if name.is_subdomain(zone)]
        return max(candidates, key=lambda z: len(z.labels)) if candidates else None

    def _signatures(self, rrset: dns.rrset.RRset) -> dns.rrset.RRset | None:
        import dns.dnssec  # noqa: PLC0415

        zone = self._zone_of(rrset.name)
        if zone is None:
            return None
        key, dnskey = self._signed[zone]
        rrsig = dns.dnssec.sign(rrset, key, zone, dnskey, lifetime=3600)
        if (rrset.name, rrset.rdtype) in self._tampered:
            broken = bytearray(rrsig.signature)
            broken[0] ^= 0xFF
            rrsig = rrsig.replace(signature=bytes(broken))
        return dns.rrset.from_rdata_list(rrset.name, rrset.ttl, [rrsig])

    def _zone_names(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """Every name that exists in the zone, empty non-terminals included (RFC 5155 §7.1), in canonical order."""
        names = {zone}
        for owner in self._data:
            while owner.is_subdomain(zone) and owner not in names:
                names.add(owner)
                owner = owner.parent()
        return sorted(names)

    def _nsec(self, qname: dns.name.Name, zone: dns.name.Name) -> dns.rrset.RRset:
        """The NSEC record at or before qname in the zone's canonical order (RFC 4034 §4, §6.1): a chain of the
        names that hold data (empty non-terminals have none)."""
        names = sorted({zone, *(n for n in self._data if n.is_subdomain(zone))})
        owner = max((n for n in names if n <= qname), default=names[-1])
        after = [n for n in names if n > owner]
        nxt = after[0] if after else zone
        types = [*self._data.get(owner, {}).keys(), dns.rdatatype.RRSIG, dns.rdatatype.NSEC]
        windows = dns.rdtypes.ANY.NSEC.Bitmap.from_rdtypes(sorted(set(types)))
        rdata = dns.rdtypes.ANY.NSEC.NSEC(dns.rdataclass.IN, dns.rdatatype.NSEC, nxt, windows)
        return dns.rrset.from_rdata_list(owner, self.negative_ttl, [rdata])

    def _closest_encloser(self, qname: dns.name.Name, zone: dns.name.Name) -> dns.name.Name:
        names = set(self._zone_names(zone))
        encloser = qname
        while encloser not in names and encloser != zone:
            encloser = encloser.parent()
        return encloser

    def _nsec_denial(self, qname: dns.name.Name, zone: dns.name.Name, nxdomain: bool) -> list[dns.rrset.RRset]:
        """The NSEC covering (or matching) qname and, for NXDOMAIN, the one proving no wildcard (RFC 4035 §3.1.3.2)."""
        proofs = [self._nsec(qname, zone)]
        if nxdomain and "wildcard" not in self.omit_proof:
            wildcard = self._nsec(dns.name.Name((b"*", *self._closest_encloser(qname, zone).labels)), zone)
            if wildcard.name != proofs[0].name:
                proofs.append(wildcard)
        return proofs

    def _nsec3_hash(self, name: dns.name.Name, zone: dns.name.Name) -> str:
        import dns.dnssec  # noqa: PLC0415

        salt, iterations = self._nsec3_params[zone]
        return dns.dnssec.nsec3_hash(name, salt, iterations, 1).lower()

    def _nsec3(self, name: dns.name.Name, zone: dns.name.Name) -> dns.rrset.RRset:
        """The NSEC3 record matching name's hash, or the one covering it (RFC 5155 §7.2)."""
        import base64  # noqa: PLC0415

        salt, iterations = self._nsec3_params[zone]
        chain = sorted((self._nsec3_hash(n, zone), n) for n in self._zone_names(zone))
        wanted = self._nsec3_hash(name, zone)
        index = max((i for i, (h, _) in enumerate(chain) if h <= wanted), default=len(chain) - 1)
        owner_hash, owner = chain[index]
        next_hash = chain[(index + 1) % len(chain)][0]
        nxt = base64.b32decode(next_hash.upper().translate(str.maketrans(_B32HEX, _B32)))
        types = [*self._data.get(owner, {}).keys(), dns.rdatatype.RRSIG] if owner in self._data else []
        windows = dns.rdtypes.ANY.NSEC3.Bitmap.from_rdtypes(sorted(set(types)))
        rdata = dns.rdtypes.ANY.NSEC3.NSEC3(
            dns.rdataclass.IN, dns.rdatatype.NSEC3, 1, 0, iterations, salt, nxt, windows
        )
        return dns.rrset.from_rdata_list(dns.name.Name((owner_hash.encode(), *zone.labels)), self.negative_ttl, [rdata])

    def _nsec3_denial(self, qname: dns.name.Name, zone: dns.name.Name, nxdomain: bool) -> list[dns.rrset.RRset]:
        """NODATA: the NSEC3 matching qname (RFC 5155 §7.2.3). NXDOMAIN: the closest-encloser proof, the NSEC3
        matching the closest encloser and the one covering the next closer name (§7.2.1), and the one covering
        the wildcard at the closest encloser (§7.2.2)."""
        if not nxdomain:
            return [self._nsec3(qname, zone)]
        encloser = self._closest_encloser(qname, zone)
        next_closer = dns.name.Name(qname.labels[-len(encloser.labels) - 1 :])
        parts = {
            "closest-encloser": encloser,
            "next-closer": next_closer,
            "wildcard": dns.name.Name((b"*", *encloser.labels)),
        }
        proofs = {self._nsec3(name, zone).name: self._nsec3(name, zone) for name in parts.values()}
        # A record left out is left out even where it also proves another part (one NSEC3 can do two jobs).
        for part in self.omit_proof & parts.keys():
            proofs.pop(self._nsec3(parts[part], zone).name, None)
        return list(proofs.values())

    def _sign_response(self, response: dns.message.Message, qname: dns.name.Name) -> None:
        wildcards = getattr(response, "postwerk_wildcards", {})
        for section in (response.answer, response.authority):
            for rrset in list(section):
                if rrset.rdtype == dns.rdatatype.RRSIG:
                    continue
                source = wildcards.get(rrset.name)
                sigs = self._signatures(source if source is not None else rrset)
                if sigs is not None:
                    section.append(dns.rrset.from_rdata_list(rrset.name, sigs.ttl, list(sigs)))
        zone = self._zone_of(qname)
        if zone is not None and wildcards and "wildcard-expansion" not in self.omit_proof:
            # RFC 4035 §3.1.3.3, RFC 5155 §7.2.6: proof that no closer name matched the query.
            for name in wildcards:
                encloser = self._closest_encloser(name, zone)
                if zone in self._nsec3_params:
                    proof = self._nsec3(dns.name.Name(name.labels[-len(encloser.labels) - 1 :]), zone)
                else:
                    proof = self._nsec(name, zone)
                response.authority.append(proof)
                response.authority.append(self._signatures(proof))
        negative = response.rcode() == dns.rcode.NXDOMAIN or not any(
            r.name == qname or r.rdtype == dns.rdatatype.CNAME for r in response.answer
        )
        if zone is not None and negative and not response.answer:
            nxdomain = response.rcode() == dns.rcode.NXDOMAIN
            deny = self._nsec3_denial if zone in self._nsec3_params else self._nsec_denial
            for proof in deny(qname, zone, nxdomain):
                response.authority.append(proof)
                sigs = self._signatures(proof)
                assert sigs is not None
                response.authority.append(sigs)

    def servfail(self, name: str, rtype: str | None = None) -> None:
        """Answer SERVFAIL for ``name`` (only for ``rtype`` if given)."""
        with self._lock:
            self._servfail.add((_to_name(name), None if rtype is None else _to_rdtype(rtype)))

    def drop(self, name: str, rtype: str | None = None) -> None:
        """Never answer queries for ``name`` (only for ``rtype`` if given)."""
        with self._lock:
            self._drop.add((_to_name(name), None if rtype is None else _to_rdtype(rtype)))

    def heal(self, name: str | None = None) -> None:
        """Undo servfail()/drop() for ``name``, or for every name."""
        with self._lock:
            if name is None:
                self._servfail.clear()
                self._drop.clear()
                return
            owner = _to_name(name)
            self._servfail = {f for f in self._servfail if f[0] != owner}
            self._drop = {f for f in self._drop if f[0] != owner}

    # ------------------------------------------------------------------ answering

    def _faulted(
        self,
        faults: set[tuple[dns.name.Name, dns.rdatatype.RdataType | None]],
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
    ) -> bool:
        return (qname, None) in faults or (qname, qtype) in faults

    def _exists(self, name: dns.name.Name) -> bool:
        if name in self._data:
            return True
        # Empty non-terminal: no records here, but some below, so the name
        # exists and must not be NXDOMAIN (RFC 8020).
        return any(owner.is_subdomain(name) for owner in self._data)

    def _soa_for(self, qname: dns.name.Name) -> dns.rrset.RRset:
        # Negative answers carry an SOA so resolvers can cache them; use an
        # explicit SOA above the name if the test added one, otherwise
        # synthesize one at the registrable-looking parent.
        candidate = qname
        while candidate != dns.name.root:
            rrset = self._data.get(candidate, {}).get(dns.rdatatype.SOA)
            if rrset is not None:
                return rrset
            candidate = candidate.parent()
        apex = qname.split(3)[1] if len(qname.labels) > 3 else qname
        soa = dns.rdtypes.ANY.SOA.SOA(
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            dns.name.from_text("ns.invalid."),
            dns.name.from_text("hostmaster.invalid."),
            1,
            3600,
            600,
            86400,
            self.negative_ttl,
        )
        return dns.rrset.from_rdata_list(apex, self.negative_ttl, [soa])

    def _answer(self, query: dns.message.Message, transport: str) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self.queries.append((_qname_text(qname), dns.rdatatype.to_text(qtype), transport))
            if self._faulted(self._drop, qname, qtype):
                return None
            if self._faulted(self._servfail, qname, qtype):
                response.flags &= ~dns.flags.AA
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
                return response
            self._fill(response, qname, qtype)
            if self._signed and query.ednsflags & dns.flags.DO:
                self._sign_response(response, qname)
        return response

    def _fill(self, response: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        name = qname
        seen: set[dns.name.Name] = set()
        for _ in range(_MAX_CNAME_CHAIN):
            node = self._data.get(name)
            if node is None and self._expand_wildcard(response, name, qtype):
                return
            if node is None:
                if not self._exists(name):
                    # RFC 6604: after a CNAME chain the rcode describes the
                    # last name, so a dangling in-zone target is NXDOMAIN.
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa_for(name))
                return
            if qtype == dns.rdatatype.ANY:
                for rrset in node.values():
                    response.answer.append(self._owned_by(rrset, name))
                return
            rrset = node.get(dns.rdatatype.RdataType.make(qtype))
            if rrset is not None:
                response.answer.append(self._owned_by(rrset, name))
                return
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                response.authority.append(self._soa_for(name))
                return
            response.answer.append(self._owned_by(cname, name))
            seen.add(name)
            name = cname[0].target  # type: ignore[attr-defined]
            if name in seen:
                return
        # Chain too long: hand back what we have and let the client give up.

    def _expand_wildcard(self, response: dns.message.Message, name: dns.name.Name, qtype: int) -> bool:
        """RFC 4592: a name that does not exist takes the records of `*.<closest encloser>` of the type asked (only
        in signed zones, where tests need it; remembered on the response so the signatures are the wildcard's)."""
        zone = self._zone_of(name)
        if zone is None or self._exists(name) or qtype == dns.rdatatype.ANY:
            return False
        wildcard = dns.name.Name((b"*", *self._closest_encloser(name, zone).labels))
        rrset = self._data.get(wildcard, {}).get(dns.rdatatype.RdataType.make(qtype))
        if rrset is None:
            return False
        response.answer.append(self._owned_by(rrset, name))
        response.postwerk_wildcards = {name: rrset}  # type: ignore[attr-defined]
        return True

    @staticmethod
    def _owned_by(rrset: dns.rrset.RRset, name: dns.name.Name) -> dns.rrset.RRset:
        # Echo the owner name with the query's letter case (0x20-style
        # resolvers compare case-sensitively on the way back).
        return dns.rrset.from_rdata_list(name, rrset.ttl, list(rrset))

    @staticmethod
    def _udp_limit(query: dns.message.Message) -> int:
        if query.edns >= 0:
            return max(512, query.payload)
        return 512

    # ------------------------------------------------------------------ transports

    def _udp_loop(self) -> None:
        sock = self._udp
        assert sock is not None
        while not self._stopping.is_set():
            try:
                wire, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:  # noqa: S112 - garbage datagrams are ignored
                continue
            try:
                response = self._answer(query, "udp")
                if response is None:
                    continue
                # prefer_truncation drops whole RRsets that do not fit and
                # sets TC, which makes stub resolvers retry over TCP.
                out = response.to_wire(max_size=self._udp_limit(query), prefer_truncation=True)
                sock.sendto(out, peer)
            except OSError:
                if self._stopping.is_set():
                    return
            except Exception:
                # One bad query must not kill the server, but a bug here
                # should be visible in the captured test log.
                log.exception("DnsServer failed to answer %r", query.question)

    def _tcp_accept_loop(self) -> None:
        listener = self._tcp
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, _peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
            thread = threading.Thread(
                target=self._tcp_conn_loop, args=(conn,), name=f"dns-tcp-conn-{self.port}", daemon=True
            )
            thread.start()

    @staticmethod
    def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = conn.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return bytes(chunks)

    def _tcp_conn_loop(self, conn: socket.socket) -> None:
        try:
            while not self._stopping.is_set():
                header = self._recv_exact(conn, 2)
                if header is None:
                    return
                wire = self._recv_exact(conn, int.from_bytes(header, "big"))
                if wire is None:
                    return
                try:
                    query = dns.message.from_wire(wire)
                except Exception:
                    log.warning("DnsServer closing TCP connection after unparseable query")
                    return
                response = self._answer(query, "tcp")
                if response is None:
                    continue
                conn.sendall(response.to_wire(prepend_length=True))
        except OSError:
            return
        except Exception:
            log.exception("DnsServer TCP handler crashed")
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def __repr__(self) -> str:
        return f"<DnsServer {self.host}:{self.port}>"
