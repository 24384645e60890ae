"""Have a real, throwaway Postfix write the DSNs in tests/data/bounces/postfix/.

Run as root on a machine with Debian's `postfix` package (the daemons need not be running):

    .venv/bin/python tests/data/bounces/generate_postfix.py

What it does, all on 127.0.0.1 and under one temporary directory:

1. starts an aiosmtpd "remote MX" that answers RCPT TO (or DATA) with the reply chosen by the recipient's
   local part (`CASES` below) and captures every message sent to the bounce domain;
2. starts a private Postfix instance (its own config_directory, queue_directory and data_directory; smtpd on a
   high port; relayhost = that aiosmtpd) with short queue lifetimes so delays and expiries happen in seconds;
3. submits one message per case (several recipients for the multi-recipient cases) with ENVID/ORCPT/RET
   (RFC 3461) over SMTP, from a Postwerk-style per-message return path;
4. waits for Postfix's own DSNs (RFC 3464, written by its bounce daemon) to come back to the bounce domain,
   saves each as postfix/<case>.eml with the expected classification beside it as <case>.json, and stops
   Postfix.

Nothing here is used by the test-suite at run time: the generated files are checked in.
"""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller

OUT_DIR = Path(__file__).resolve().parent / "postfix"
BOUNCE_DOMAIN = "bounces.postwerk.example"
MYHOSTNAME = "mta.postwerk.example"
POSTFIX_LIB = "/usr/lib/postfix/sbin"

# local part -> (reply at RCPT or at DATA, expected reason, expected kind)
REPLIES: dict[str, tuple[str, str, str, str]] = {
    "nosuchuser": (
        "rcpt",
        "550 5.1.1 <nosuchuser@gmail.example>: Recipient address rejected: User unknown in virtual mailbox table",
        "user_unknown",
        "hard",
    ),
    "full": ("rcpt", "552 5.2.2 <full@yahoo.example>: Mailbox full", "mailbox_full", "soft"),
    "blocked": (
        "rcpt",
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.example; "
        "https://www.spamhaus.example/query/ip/127.0.0.1",
        "policy_rejected",
        "soft",
    ),
    "dmarc": (
        "rcpt",
        "550 5.7.26 Unauthenticated email from acme.example is not accepted due to domain's DMARC policy. "
        "Please contact the administrator of acme.example domain if this was a legitimate mail.",
        "auth_failure",
        "soft",
    ),
    "toolarge": ("data", "552 5.3.4 Message size exceeds fixed limit", "message_too_large", "soft"),
    "disabled": (
        "rcpt",
        "550 5.2.1 The email account that you tried to reach is disabled.",
        "mailbox_disabled",
        "soft",
    ),
    "moved": (
        "rcpt",
        "551 5.1.6 User has moved; please try <new.address@newco.example>",
        "has_moved",
        "hard",
    ),
    "spam": (
        "data",
        "550 5.7.1 Message rejected because it looks like spam (content filter score 12.3)",
        "spam_blocked",
        "soft",
    ),
    "nodomain": (
        "rcpt",
        "550 5.1.2 <nodomain@gone.example>: Recipient address rejected: Domain not found",
        "domain_not_found",
        "hard",
    ),
    # Temporary failures: first a delay warning, then a bounce when maximal_queue_lifetime runs out.
    "greylisted": ("rcpt", "450 4.2.0 <greylisted@outlook.example>: Recipient address rejected: Greylisted", "", ""),
    "ratelimit": (
        "rcpt",
        "421 4.7.0 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail originating from "
        "your IP address. Try again later.",
        "",
        "",
    ),
}

# case name -> recipients (each "localpart@domain") and what Postfix should send back
CASES: dict[str, dict] = {
    "user_unknown": {"rcpts": ["nosuchuser@gmail.example"]},
    "mailbox_full": {"rcpts": ["full@yahoo.example"]},
    "spamhaus_blocked": {"rcpts": ["blocked@hotmail.example"]},
    "dmarc_rejected": {"rcpts": ["dmarc@gmail.example"]},
    "message_too_large": {"rcpts": ["toolarge@corp.example"]},
    "mailbox_disabled": {"rcpts": ["disabled@gmail.example"]},
    "has_moved": {"rcpts": ["moved@oldco.example"]},
    "spam_content": {"rcpts": ["spam@corp.example"]},
    "domain_not_found": {"rcpts": ["nodomain@gone.example"]},
    # Two failures and one delivery in one transaction: one DSN listing both failures.
    "multi_recipient": {"rcpts": ["nosuchuser@gmail.example", "full@yahoo.example", "jane@fine.example"]},
    # 4xx: a delay warning first, then a bounce when the queue lifetime runs out.
    "greylisted": {"rcpts": ["greylisted@outlook.example"], "temporary": True},
    "rate_limited": {"rcpts": ["ratelimit@gmail.example"], "temporary": True},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteMx:
    """The far end: rejects recipients by local part, captures bounces to the bounce domain."""

    def __init__(self) -> None:
        self.captured: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        local, _, domain = address.lower().partition("@")
        if domain == BOUNCE_DOMAIN:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        reply = REPLIES.get(local)
        if reply and reply[0] == "rcpt":
            return reply[1]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        for rcpt in envelope.rcpt_tos:
            reply = REPLIES.get(rcpt.lower().partition("@")[0])
            if reply and reply[0] == "data":
                return reply[1]
        if any(r.lower().endswith("@" + BOUNCE_DOMAIN) for r in envelope.rcpt_tos):
            with self.lock:
                self.captured.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Ok: queued"


def write_postfix_config(root: Path, smtpd_port: int, relay_port: int) -> Path:
    conf = root / "conf"
    for sub in ("conf", "queue", "data"):
        (root / sub).mkdir()
    shutil.chown(root / "data", "postfix", "postfix")  # postfix-script insists
    (conf / "main.cf").write_text(
        f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = {MYHOSTNAME}
mydomain = postwerk.example
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_host_lookup = native
smtp_dns_support_level = disabled
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
alias_maps =
alias_database =
biff = no
# Seconds, not days: a 4xx recipient gets a delay warning, then expires, within the script's run.
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
delay_warning_time = 4s
maximal_queue_lifetime = 25s
bounce_queue_lifetime = 25s
"""
    )
    (conf / "master.cf").write_text(
        f"""\
127.0.0.1:{smtpd_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
    )
    return conf


def submit(port: int, case: str, rcpts: list[str]) -> str:
    msg = EmailMessage()
    msg["From"] = "Acme <hello@acme.example>"
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = f"Your order ({case})"
    msg_id = make_msgid(idstring=case.replace("_", "-"), domain="acme.example")
    msg["Message-ID"] = msg_id
    msg["X-Postwerk-Message-Id"] = f"0190c0de-{len(case):04x}-7000-8000-{zlib.crc32(case.encode()):012x}"
    body = "Thanks for your order.\n"
    if case == "message_too_large":
        body += ("x" * 76 + "\n") * 2000  # ~150 KB: the far end refuses it at DATA
    msg.set_content(body)
    # Postwerk's per-message return path: b-<message id hex><hmac>@bounces...
    sender = f"b-{zlib.crc32(case.encode()):032x}0123456789ab@{BOUNCE_DOMAIN}"
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.acme.example")
        smtp.mail(sender, ["RET=HDRS", f"ENVID={case.upper()}-ENVID"])
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt, ["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;{rcpt}"])
            if code >= 300:
                raise RuntimeError(f"postfix refused {rcpt}: {code} {text!r}")
        smtp.data(msg.as_bytes())
    return msg_id


def expected_for(case: str, raw: bytes) -> dict:
    """The expected classification, from the recipients Postfix listed and the REPLIES table."""
    text = raw.decode("utf-8", "replace")
    delayed = "Action: delayed" in text
    recipients = []
    for rcpt in dict.fromkeys(re.findall(r"Final-Recipient: rfc822; *(\S+)", text)):
        local = rcpt.partition("@")[0].lower()
        _where, _reply, reason, kind = REPLIES[local]
        if not reason:  # a 4xx reply: delayed, then given up on when the queue lifetime ran out
            kind = "soft"
            if not delayed:
                reason = "expired"
            else:
                reason = "rate_limited" if local == "ratelimit" else "other"
        recipients.append(
            {"address": rcpt, "kind": kind, "reason": reason, "action": "delayed" if delayed else "failed"}
        )
    return {"type": "bounce", "recipients": recipients}


def main() -> int:
    if not Path(POSTFIX_LIB, "master").exists():
        print("postfix is not installed: apt-get install -y --no-install-recommends postfix", file=sys.stderr)
        return 1
    remote = RemoteMx()
    relay_port, smtpd_port = free_port(), free_port()
    controller = Controller(remote, hostname="127.0.0.1", port=relay_port, server_hostname="mx.remote.example")
    controller.start()
    root = Path(tempfile.mkdtemp(prefix="postwerk-postfix-"))
    root.chmod(0o755)  # the postfix user must reach its data and queue directories
    conf = write_postfix_config(root, smtpd_port, relay_port)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if subprocess.run(["postfix", "-c", str(conf), "start"], check=False, env=env).returncode:
        controller.stop()
        log = root / "maillog"
        print(log.read_text() if log.exists() else "postfix did not start", file=sys.stderr)
        return 1
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", smtpd_port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        sent = {case: submit(smtpd_port, case, spec["rcpts"]) for case, spec in CASES.items()}
        print(f"submitted {len(sent)} messages; waiting for DSNs", file=sys.stderr)
        # One DSN per failing case, plus a delay warning and an expiry for each of the two 4xx cases.
        wanted = len(CASES) + sum(1 for spec in CASES.values() if spec.get("temporary"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(remote.captured) < wanted:
            time.sleep(1)
    finally:
        subprocess.run(["postfix", "-c", str(conf), "stop"], check=False, env=env)
        controller.stop()
    OUT_DIR.mkdir(exist_ok=True)
    for _sender, rcpts, raw in remote.captured:
        text = raw.decode("utf-8", "replace")
        envid = re.search(r"Original-Envelope-Id: *(\S+)", text)
        case = envid.group(1).lower().removesuffix("-envid") if envid else None
        if case not in CASES:
            print(f"unmatched DSN to {rcpts}", file=sys.stderr)
            continue
        name = case
        if CASES[case].get("temporary"):
            name += "_delay_warning" if "Action: delayed" in text else "_expired"
        # Postfix writes CRLF-free LF text; keep it byte for byte.
        (OUT_DIR / f"{name}.eml").write_bytes(raw)
        (OUT_DIR / f"{name}.json").write_text(json.dumps(expected_for(case, raw), indent=2) + "\n")
        print(f"wrote postfix/{name}.eml", file=sys.stderr)
    if (root / "maillog").exists():
        print((root / "maillog").read_text()[-3000:], file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    return 0 if len(remote.captured) >= wanted else 2


if __name__ == "__main__":
    sys.exit(main())
