"""AWS Signature Version 4, checked on a received request. Pure: no database, no Django.

The signature is recomputed with botocore's own signer (`botocore.auth.SigV4Auth`, the code every boto3 client
signs with) over the request as it arrived, and compared in constant time: the canonical request, string to sign
and key derivation are AWS's maintained implementation, not ours. What is ours is reading the request back into
the form the signer takes, and the refusals, worded and coded as AWS words them:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from botocore.utils import percent_encode

from mail.errors import PostwerkError

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "ses"
# How far the signing time may be from ours, either way: AWS allows 5 minutes and answers "Signature expired".
MAX_SKEW = timedelta(minutes=5)

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request\s*,\s*SignedHeaders=(?P<headers>[a-z0-9\-;]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(PostwerkError):
    """A request AWS would refuse for its signature: the error code AWS answers with, its message and status."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Signed:
    """What an Authorization header claims: who signed, for what scope, which headers, and the signature."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str  # X-Amz-Date, YYYYMMDD'T'HHMMSS'Z'


def signed_parse(authorization: str | None, amz_date: str | None) -> Signed:
    """Read the Authorization and X-Amz-Date headers. Raises SignatureError as AWS answers a request without a
    signature (403 MissingAuthenticationTokenException) or with one it cannot read (400 IncompleteSignature)."""
    if not authorization:
        raise SignatureError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise SignatureError(
            "IncompleteSignatureException",
            f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters "
            f"of an {ALGORITHM} signature. Authorization={authorization[:200]}",
            400,
        )
    if not amz_date or _parse_time(amz_date) is None:
        raise SignatureError(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header "
            "in the ISO 8601 basic format (YYYYMMDD'T'HHMMSS'Z').",
            400,
        )
    signed = Signed(
        access_key_id=match["key"],
        date=match["date"],
        region=match["region"],
        service=match["service"],
        signed_headers=tuple(match["headers"].split(";")),
        signature=match["signature"],
        timestamp=amz_date,
    )
    if signed.service != SERVICE:
        raise SignatureError(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'."
        )
    if signed.date != amz_date[:8]:
        raise SignatureError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{signed.date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    if "host" not in signed.signed_headers:
        raise SignatureError("InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return signed


def signature_check(
    signed: Signed,
    *,
    secret: str,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> None:
    """Recompute the signature over the request as received and compare; then the signing time. Raises
    SignatureError (403 InvalidSignatureException) for a signature that does not match, or one more than five
    minutes from `now` ("Signature expired"). `path` is the path as the client sent it (percent-encoded),
    `query` the raw query string, `headers` case-insensitive."""
    request = AWSRequest(
        method=method.upper(),
        url=f"http://{headers.get('host', '')}{path}" + (f"?{query}" if query else ""),
        headers={name: headers.get(name, "") for name in signed.signed_headers},
        data=body,
    )
    request.context["timestamp"] = signed.timestamp
    declared = headers.get("x-amz-content-sha256") if "x-amz-content-sha256" in signed.signed_headers else None
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        # The signer would take the declared hash as the body's: it must be this body's (no UNSIGNED-PAYLOAD).
        raise _mismatch()
    signer = _Verifier(Credentials(signed.access_key_id, secret), SERVICE, signed.region, signed.signed_headers)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signed.signature):
        raise _mismatch()
    signed_at = _parse_time(signed.timestamp)
    assert signed_at is not None  # signed_parse checked it
    if signed_at < now - MAX_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature expired: {signed.timestamp} is now earlier than {_format(now - MAX_SKEW)} "
            f"({_format(now)} - 5 min.)",
        )
    if signed_at > now + MAX_SKEW:
        raise SignatureError(
            "InvalidSignatureException",
            f"Signature not yet current: {signed.timestamp} is still later than {_format(now + MAX_SKEW)} "
            f"({_format(now)} + 5 min.)",
        )


def path_as_sent(raw_uri: str | None, path: str) -> str:
    """The request path as the client encoded it: the server's raw request URI when it keeps one (gunicorn's
    RAW_URI), else the decoded path with each segment encoded again as the SDKs encode them (RFC 3986
    unreserved characters kept), which is what the client signed."""
    if raw_uri:
        return raw_uri.split("?", 1)[0]
    return "/".join(percent_encode(segment) for segment in path.split("/"))


class _Verifier(SigV4Auth):
    """botocore's signer, signing exactly the headers the client named (botocore's own choice leaves out some,
    such as User-Agent, that another client may have signed)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed_headers: tuple[str, ...]) -> None:
        super().__init__(credentials, service, region)
        self._signed_headers = signed_headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name in self._signed_headers:
            header_map[name] = request.headers.get(name, "")
        return header_map


def _mismatch() -> SignatureError:
    return SignatureError(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.",
    )


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _format(when: datetime) -> str:
    return when.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
