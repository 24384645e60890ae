"""TLS-RPT (RFC 8460): the `_smtp._tls` record, the aggregate report (JSON, gzip'd), the report message for
mailto destinations and the upload to https ones. Pure, apart from the HTTPS POST."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import http.client
import json
import re
import socket
import textwrap
from dataclasses import dataclass
from email.utils import format_datetime, make_msgid
from urllib.parse import unquote, urlsplit

from django.conf import settings

from mail.dns import host_addresses
from mail.tls_verify import https_context

MEDIA_TYPE = "application/tlsrpt+gzip"


@dataclass(frozen=True)
class SessionCount:
    """One row of counts: a policy, a result ("" = success), the hosts and addresses, how many sessions."""

    policy_type: str  # tlsa, sts, no-policy-found
    policy: dict  # policy-string, mx-host
    result: str
    mx_host: str
    sending_ip: str
    receiving_ip: str
    count: int
    detail: str = ""


def rua(txt_strings: list[str]) -> list[str]:
    """The report URIs of a domain's `_smtp._tls` TXT records (RFC 8460 §3): exactly one record starting
    `v=TLSRPTv1`, whose `rua` lists mailto: and https: URIs separated by commas; [] when there is none."""
    records = [t for t in txt_strings if re.match(r"^v=TLSRPTv1\s*(;|$)", t)]
    if len(records) != 1:
        return []
    for part in records[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "rua":
            uris = [u.strip() for u in value.split(",") if u.strip()]
            return [u for u in uris if u.lower().startswith(("mailto:", "https://"))]
    return []


def build_report(
    *, domain: str, day: dt.date, counts: list[SessionCount], organization: str, contact: str, report_id: str
) -> dict:
    """RFC 8460 §4.4's JSON: one entry per policy, with its totals and failure details."""
    policies: dict[str, dict] = {}
    for row in counts:
        key = json.dumps([row.policy_type, row.policy], sort_keys=True)
        entry = policies.get(key)
        if entry is None:
            policy: dict[str, object] = {"policy-type": row.policy_type, "policy-domain": domain}
            if row.policy.get("policy-string"):
                policy["policy-string"] = row.policy["policy-string"]
            if row.policy.get("mx-host"):
                policy["mx-host"] = row.policy["mx-host"]
            entry = policies[key] = {
                "policy": policy,
                "summary": {"total-successful-session-count": 0, "total-failure-session-count": 0},
                "failure-details": [],
            }
        if not row.result:
            entry["summary"]["total-successful-session-count"] += row.count
            continue
        entry["summary"]["total-failure-session-count"] += row.count
        failure: dict[str, object] = {"result-type": row.result, "failed-session-count": row.count}
        if row.sending_ip:
            failure["sending-mta-ip"] = row.sending_ip
        if row.receiving_ip:
            failure["receiving-ip"] = row.receiving_ip
        if row.mx_host:
            failure["receiving-mx-hostname"] = row.mx_host
        if row.detail:
            failure["failure-reason-code"] = row.detail[:200]
        entry["failure-details"].append(failure)
    for entry in policies.values():
        if not entry["failure-details"]:
            del entry["failure-details"]
    return {
        "organization-name": organization,
        "date-range": {
            "start-datetime": f"{day.isoformat()}T00:00:00Z",
            "end-datetime": f"{day.isoformat()}T23:59:59Z",
        },
        "contact-info": contact,
        "report-id": report_id,
        "policies": list(policies.values()),
    }


def gzipped(report: dict) -> bytes:
    # mtime=0: the same report gives the same bytes (a retry uploads exactly what the first attempt did).
    return gzip.compress(json.dumps(report, separators=(",", ":")).encode(), mtime=0)


def filename(*, submitter: str, domain: str, day: dt.date, report_id: str) -> str:
    """RFC 8460 §5.3: submitter!policy-domain!begin!end!unique-id.json.gz, times in seconds since the epoch."""
    begin = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
    unique = re.sub(r"[^A-Za-z0-9._-]", "_", report_id)[:64]
    return f"{submitter}!{domain}!{begin}!{begin + 86399}!{unique}.json.gz"


def report_message(
    *, sender: str, recipient: str, domain: str, submitter: str, day: dt.date, report_id: str, data: bytes
) -> bytes:
    """The report as a message (RFC 8460 §5.3): multipart/report; report-type="tlsrpt", a human-readable part
    and the gzip'd JSON as application/tlsrpt+gzip. CRLF line ends, ASCII; DKIM-signed at delivery."""
    boundary = f"tlsrpt-{make_msgid(domain='x').strip('<>@x.').replace('.', '')}"
    name = filename(submitter=submitter, domain=domain, day=day, report_id=report_id)
    body64 = "\r\n".join(textwrap.wrap(base64.b64encode(data).decode(), 76))
    lines = [
        f"From: {sender}",
        f"To: {recipient}",
        f"Subject: Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>",
        f"Date: {format_datetime(dt.datetime.now(dt.UTC))}",
        f"TLS-Report-Domain: {domain}",
        f"TLS-Report-Submitter: {submitter}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type="tlsrpt"; boundary="{boundary}"',
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "",
        f"This is an aggregate TLS report (RFC 8460) from {submitter} for {domain}, {day.isoformat()} UTC.",
        "",
        f"--{boundary}",
        f'Content-Type: {MEDIA_TYPE}; name="{name}"',
        f'Content-Disposition: attachment; filename="{name}"',
        "Content-Transfer-Encoding: base64",
        "",
        body64,
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def mailto_address(uri: str) -> str:
    return unquote(uri.split(":", 1)[1].split("?", 1)[0])


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=https_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(uri: str, data: bytes) -> tuple[bool, str]:
    """POST the gzip'd report to an https rua (RFC 8460 §5.4): (delivered?, the status or the error)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    addresses = host_addresses(host) if host else []
    if not addresses:
        return False, f"{host or uri} has no address"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    error = "no address could be reached"
    for address in addresses:
        conn = _PinnedHTTPSConnection(host, parts.port or 443, address, settings.POSTWERK_TLSRPT_TIMEOUT)
        try:
            conn.request("POST", path, body=data, headers={"Content-Type": MEDIA_TYPE})
            response = conn.getresponse()
            response.read(4096)
        except (OSError, http.client.HTTPException) as exc:
            error = f"{host} [{address}]: {type(exc).__name__}: {exc}"[:300]
            continue
        finally:
            conn.close()
        return 200 <= response.status < 300, f"HTTP {response.status}"
    return False, error
