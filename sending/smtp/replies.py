"""Every SMTP reply carries an enhanced status code (RFC 2034, RFC 3463), including aiosmtpd's stock replies."""

from __future__ import annotations

import re

_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(\s|$)")

# aiosmtpd's own wording for cases whose class alone would give the wrong detail.
_BY_TEXT = (
    ("500 Command line too long", "500 5.5.6 Command line too long"),
    ("500 Line too long", "500 5.5.6 Line too long (RFC 5321 4.5.3.1.6)"),
    ("500 Error: command", "500 5.5.1 Command not recognized"),
    ("552 Error: Too much mail data", "552 5.3.4 Message size exceeds the fixed maximum"),
    ("552 Error: message size exceeds", "552 5.3.4 Message size exceeds the fixed maximum"),
    ("530 Must issue a STARTTLS", "530 5.7.0 Must issue a STARTTLS command first"),
    ("554 Command refused due to lack of security", "554 5.7.0 TLS handshake failed"),
    ("501 Error: SMTPUTF8", "501 5.5.4 SMTPUTF8 takes no arguments"),
    ("500 Error: strict ASCII mode", "500 5.6.7 Non-ASCII input needs SMTPUTF8"),
)
# RFC 3463 defaults by reply code.
_BY_CODE = {
    "211": "2.0.0",
    "214": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "252": "2.0.0",
    "421": "4.3.0",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.5.3",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "551": "5.1.6",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
# RFC 2034 §3: the greeting, HELO/EHLO replies and intermediate replies carry no enhanced code.
_EXEMPT = {"220", "334", "354"}


def with_enhanced_status(line: str) -> str:
    if len(line) < 4 or line[3] != " " or not line[:3].isdigit():
        return line
    code, text = line[:3], line[4:]
    if code in _EXEMPT or _ENHANCED.match(text):
        return line
    for prefix, replacement in _BY_TEXT:
        if line.startswith(prefix):
            return replacement
    return f"{code} {_BY_CODE.get(code, f'{code[0]}.0.0')} {text}"
