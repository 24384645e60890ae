"""Have real Exim, OpenSMTPD, Sendmail, the DragonFly Mail Agent (dma) and Courier write the notices in
tests/data/bounces/.

Run as root on Debian (bookworm). Exim also needs `libidn12` installed (`apt-get install libidn12`, a library that
conflicts with nothing): it re-executes itself with a cleared environment, so LD_LIBRARY_PATH cannot point it at
an unpacked copy.

    .venv/bin/python tests/data/bounces/generate_mtas.py [--mta exim,opensmtpd,sendmail,dma,courier] [--work DIR]

The MTAs conflict with the installed postfix as Debian packages, so they are never installed: `apt-get download`
fetches the .debs into the work folder (default /tmp/postwerk-mtas), `dpkg -x` unpacks each into its own folder,
and every MTA runs from there, inside its own mount namespace (`unshare -m`), where a private /etc/passwd (with
the MTA's system user), /etc/dma, /var/spool/smtpd... are bind-mounted over the real ones. Nothing outside the
work folder changes.

The far end is a set of loopback "recipient servers", all on one port, one per 127.0.0.x address:

- 127.0.0.2: answers RCPT TO (or DATA) with the reply chosen by the recipient's local part (`REPLIES`), accepts
  everything else, and captures every message for the bounce domain (the notices come back there);
- 127.0.0.3 / .7: refuse every non-null MAIL FROM (sender domain does not exist / sender rejected);
- 127.0.0.4: refuses MAIL FROM until STARTTLS (TLS required);
- 127.0.0.5: nothing listens (connection refused, until the queue lifetime runs out);
- 127.0.0.6: accepts the connection and never says a word (a timeout, until the queue lifetime runs out).

Each MTA routes by recipient domain (`ROUTES`) to those addresses with seconds-long queue lifetimes, gets one
message per case (`CASES`) from a Postwerk-style per-message return path, and the notices it sends back are saved
as <mta>/<case>.eml with the expected labels (from the case table, never from the parser) as <case>.json.

The generated files are checked in; nothing here runs in the test-suite. `--relabel` rewrites only the labels.

Sendmail skips queue runs while the load average is above its QueueLA: on this busy machine an earlier run got
no retries (so no multi-recipient, too-large, rate-limit or expiry notices), probably for that reason; the load
limits are now set out of reach, and a later run wrote them all. Not covered: dma retries a temporary failure
for days and delivers one recipient per process, so it only has the permanent cases.

Courier 1.0.16 has its paths compiled in (/usr/lib/courier, /etc/courier, /var/lib/courier, /run/courier): in its
namespace the unpacked /usr and a private /etc/courier are laid over the real ones as read-only overlays and its
queue and run folders are private binds; courierd runs in the foreground and mail is handed to Courier's own
sendmail inside that namespace (nsenter). It reports a refused or silent connection as "Network is down".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import threading
import time
import zlib
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from aiosmtpd.controller import Controller

OUT = Path(__file__).resolve().parent
BOUNCE_DOMAIN = "bounces.postwerk.example"
PACKAGES = {
    "exim": ["exim4-daemon-light", "exim4-base", "libidn12"],
    "opensmtpd": ["opensmtpd"],
    "sendmail": ["sendmail-bin", "sendmail-base", "sendmail-cf", "m4"],
    "dma": ["dma"],
    # courier-base's own libraries, and libidn12: none of them is installed here, all of them unpack beside it.
    "courier": [
        "courier-mta",
        "courier-base",
        "courier-authlib",
        "courier-authdaemon",
        "libcourier-unicode4",
        "libidn12",
        "libgamin0",
        "libltdl7",
        "libnet-cidr-perl",
    ],
}

# Where each MTA's notices go (exim/ and sendmail/ hold hand-written notices of other versions).
FOLDERS = {
    "exim": "exim_mta",
    "opensmtpd": "opensmtpd_mta",
    "sendmail": "sendmail_mta",
    "dma": "dma_mta",
    "courier": "courier_mta",
}

# recipient local part -> (where the far end answers, reply, expected reason, expected kind)
REPLIES: dict[str, tuple[str, str, str, str]] = {
    "nosuchuser": ("rcpt", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown", "user_unknown", "hard"),
    "vague": ("rcpt", "550 Requested action not taken: mailbox unavailable", "user_unknown", "hard"),
    "full": ("rcpt", "552 5.2.2 <{rcpt}>: Mailbox full, quota exceeded", "mailbox_full", "soft"),
    "disabled": (
        "rcpt",
        "550 5.2.1 The email account that you tried to reach is disabled.",
        "mailbox_disabled",
        "soft",
    ),
    "moved": ("rcpt", "551 5.1.6 User has moved; please try <new@newco.example>", "has_moved", "hard"),
    "blocked": (
        "rcpt",
        "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.example",
        "policy_rejected",
        "soft",
    ),
    "unreachable": (
        "rcpt",
        "550 5.5.0 Requested action not taken: domain is not reachable",
        "domain_not_found",
        "hard",
    ),
    "spam": ("data", "550 5.7.1 Message rejected as spam by content filter", "spam_blocked", "soft"),
    "toolarge": ("data", "552 5.3.4 Message size exceeds fixed maximum message size", "message_too_large", "soft"),
    "ratelimit": ("rcpt", "450 4.7.28 Our system has detected an unusual rate of mail; try again later", "", ""),
}

# recipient domain -> the recipient server's address (see the module docstring)
ROUTES = {
    "senderreject.example": "127.0.0.3",
    "sendernotvalid.example": "127.0.0.7",
    "tlsonly.example": "127.0.0.4",
    "refused.example": "127.0.0.5",
    "tarpit.example": "127.0.0.6",
}
DEFAULT_ROUTE = "127.0.0.2"
MAIL_FROM_REPLIES = {
    "127.0.0.3": "553 5.1.8 <{sender}>: Sender address rejected: Domain not found",
    "127.0.0.7": "550 5.7.1 Sender rejected: sender domain is not valid",
    "127.0.0.4": "530 5.7.0 Must issue a STARTTLS command first",
}

# case -> recipients and the expected label of each: (reason, kind) when the notice is a failure, or None to take
# the REPLIES entry. "temporary" cases give a delay warning (where the MTA sends one) and then an expiry.
CASES: dict[str, dict] = {
    "user_unknown": {"rcpts": {"nosuchuser@gmail.example": None}},
    "vague_mailbox_unavailable": {"rcpts": {"vague@corp.example": None}},
    "mailbox_full": {"rcpts": {"full@yahoo.example": None}},
    "mailbox_disabled": {"rcpts": {"disabled@gmail.example": None}},
    "has_moved": {"rcpts": {"moved@oldco.example": None}},
    "policy_blocked": {"rcpts": {"blocked@hotmail.example": None}},
    "domain_not_reachable": {"rcpts": {"unreachable@corp.example": None}},
    "spam_content": {"rcpts": {"spam@corp.example": None}},
    "message_too_large": {"rcpts": {"toolarge@corp.example": None}},
    "sender_domain_rejected": {"rcpts": {"jane@senderreject.example": ("sender_rejected", "soft")}},
    "sender_rejected": {"rcpts": {"joe@sendernotvalid.example": ("sender_rejected", "soft")}},
    "tls_required": {"rcpts": {"ann@tlsonly.example": ("policy_rejected", "soft")}},
    "multi_recipient": {
        "rcpts": {
            "nosuchuser@gmail.example": None,
            "full@yahoo.example": None,
            "disabled@gmail.example": None,
            "fine@fine.example": "delivered",
        }
    },
    "rate_limited": {"rcpts": {"ratelimit@gmail.example": ("expired", "soft")}, "temporary": "rate_limited"},
    "connection_refused": {"rcpts": {"bob@refused.example": ("expired", "soft")}, "temporary": "network_error"},
    "timeout": {"rcpts": {"sue@tarpit.example": ("expired", "soft")}, "temporary": "network_error"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- The far end ---------------------------------------------------------------------------------------------


class RecipientServer:
    """One loopback recipient server; all of them capture what is addressed to the bounce domain."""

    def __init__(self, address: str, captured: list[bytes], lock: threading.Lock) -> None:
        self.address, self.captured, self.lock = address, captured, lock

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        reply = MAIL_FROM_REPLIES.get(self.address)
        if reply and address not in ("", "<>"):
            return reply.format(sender=address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        local, _, domain = address.lower().partition("@")
        reply = REPLIES.get(local)
        if domain != BOUNCE_DOMAIN and reply and reply[0] == "rcpt":
            return reply[1].format(rcpt=address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        for rcpt in envelope.rcpt_tos:
            reply = REPLIES.get(rcpt.lower().partition("@")[0])
            if reply and reply[0] == "data":
                return reply[1].format(rcpt=rcpt)
        if any(r.lower().endswith("@" + BOUNCE_DOMAIN) for r in envelope.rcpt_tos):
            with self.lock:
                self.captured.append(envelope.original_content)
        return "250 2.0.0 Ok: queued"


class Tarpit(threading.Thread):
    """Accepts connections and never answers: the MTA times out waiting for the greeting."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server((address, port))
        self.held: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def start_far_end(port: int) -> tuple[list[bytes], list]:
    captured: list[bytes] = []
    lock = threading.Lock()
    running: list = []
    for address in (DEFAULT_ROUTE, *MAIL_FROM_REPLIES):
        controller = Controller(
            RecipientServer(address, captured, lock),
            hostname=address,
            port=port,
            server_hostname=f"mx{address.rsplit('.', 1)[1]}.remote.example",
            data_size_limit=10_000_000,
        )
        controller.start()
        running.append(controller)
    tarpit = Tarpit(ROUTES["tarpit.example"], port)
    tarpit.start()
    running.append(tarpit)
    return captured, running


def stop_far_end(running: list) -> None:
    for item in running:
        item.close() if isinstance(item, Tarpit) else item.stop()


# --- Packages, namespaces ------------------------------------------------------------------------------------


def unpack(work: Path, mta: str) -> Path:
    """apt-get download + dpkg -x of the MTA's packages into work/root/<mta>; returns that root."""
    root = work / "root" / mta
    if root.exists():
        return root
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES[mta]], cwd=debs, check=True, capture_output=True)
    root.mkdir(parents=True)
    for name in PACKAGES[mta]:
        for deb in debs.glob(f"{name}_*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


def private_etc(run: Path, users: list[tuple[str, int]]) -> list[tuple[Path, str]]:
    """A copy of /etc/passwd and /etc/group with the MTA's system users added, to bind-mount over the real ones."""
    passwd, group = run / "passwd", run / "group"
    passwd.write_text(
        Path("/etc/passwd").read_text()
        + "".join(f"{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin\n" for name, uid in users)
    )
    group.write_text(Path("/etc/group").read_text() + "".join(f"{name}:x:{uid}:\n" for name, uid in users))
    return [(passwd, "/etc/passwd"), (group, "/etc/group")]


def in_namespace(
    binds: list[tuple[Path, str]],
    argv: list[str],
    env: dict | None = None,
    *,
    etc_layer: Path | None = None,
    usr_layer: Path | None = None,
    **kwargs,
):
    """Run argv in a new mount namespace with each (source, target) bind-mounted first, and etc_layer's files
    laid over /etc (a read-only overlay) for the paths that do not exist here at all (/etc/dma); usr_layer's
    likewise over /usr (Courier's programs and libraries, at their compiled-in paths)."""
    script = "set -e\n"
    if etc_layer is not None:
        script += f"mount -t overlay overlay -o 'lowerdir={etc_layer}:/etc' /etc\n"
    if usr_layer is not None:
        script += f"mount -t overlay overlay -o 'lowerdir={usr_layer}:/usr' /usr\n"
    script += "".join(f"mount --bind '{src}' '{dst}'\n" for src, dst in binds) + 'exec "$@"\n'
    return subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})},
        **kwargs,
    )


def wait_port(port: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


# --- The MTAs ------------------------------------------------------------------------------------------------


def exim(root: Path, run: Path, port: int, far: int) -> subprocess.Popen:
    for sub in ("spool", "log"):
        (run / sub).mkdir()
        os.chown(run / sub, 60101, 60101)
    routes = " ; ".join(f"{domain} {address}" for domain, address in ROUTES.items())
    conf = run / "exim.conf"
    conf.write_text(f"""\
exim_user = Debian-exim
exim_group = Debian-exim
exim_path = {root}/usr/sbin/exim4
keep_environment = LD_LIBRARY_PATH
primary_hostname = mta.exim.example
qualify_domain = exim.example
spool_directory = {run}/spool
log_file_path = {run}/log/%slog
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
acl_smtp_rcpt = acl_rcpt
dsn_advertise_hosts = *
delay_warning = 8s:10m
timeout_frozen_after = 2m
host_lookup =
rfc1413_hosts =
received_header_text = Received: from $sender_rcvhost by $primary_hostname with $received_protocol id $message_exim_id

begin acl
acl_rcpt:
  accept

begin routers
remote:
  driver = manualroute
  transport = remote_smtp
  route_list = {routes} ; * {DEFAULT_ROUTE}
  self = send

begin transports
remote_smtp:
  driver = smtp
  port = {far}
  connect_timeout = 3s
  command_timeout = 4s
  allow_localhost
  hosts_avoid_tls = *

begin retry
*  *  F,30s,4s
""")
    conf.chmod(0o644)
    binds = private_etc(run, [("Debian-exim", 60101)])
    lib = root / "usr/lib/x86_64-linux-gnu"
    return in_namespace(
        binds,
        [str(root / "usr/sbin/exim4"), "-C", str(conf), "-bdf", "-q3s"],
        env={"LD_LIBRARY_PATH": str(lib)},
    )


def opensmtpd(root: Path, run: Path, port: int, far: int) -> subprocess.Popen:
    # /var/spool/smtpd is compiled in and absent here: a private /var/spool (only in the namespace) holds it.
    var_spool = run / "var-spool"
    (var_spool / "smtpd").mkdir(parents=True, mode=0o711)
    # So are its chroot (/var/lib/opensmtpd/empty) and its control socket's folder (/var/run).
    var_lib, var_run = run / "var-lib", run / "var-run"
    (var_lib / "opensmtpd/empty").mkdir(parents=True)
    var_run.mkdir()
    actions = "".join(
        f'action "to{address.rsplit(".", 1)[1]}" relay host smtp://{address}:{far}\n'
        for address in sorted({*ROUTES.values(), DEFAULT_ROUTE})
    )
    matches = "".join(
        f'match from any for domain "{domain}" action "to{address.rsplit(".", 1)[1]}"\n'
        for domain, address in ROUTES.items()
    )
    conf = run / "smtpd.conf"
    conf.write_text(f"""\
queue ttl 30s
bounce warn-interval 8s
smtp max-message-size 20M
listen on 127.0.0.1 port {port} hostname mta.opensmtpd.example
{actions}{matches}match from any for any action "to{DEFAULT_ROUTE.rsplit(".", 1)[1]}"
""")
    binds = private_etc(run, [("opensmtpd", 60102), ("opensmtpq", 60103)])
    binds += [(var_spool, "/var/spool"), (var_lib, "/var/lib"), (var_run, "/run")]
    return in_namespace(binds, [str(root / "usr/sbin/smtpd"), "-d", "-f", str(conf)])


def sendmail(root: Path, run: Path, port: int, far: int) -> subprocess.Popen:
    cf_dir = root / "usr/share/sendmail/cf"
    (run / "queue").mkdir(mode=0o700)
    mailertable = run / "mailertable"
    mailertable.write_text(
        "".join(f"{domain} esmtp:[{address}]\n" for domain, address in ROUTES.items()) + f". esmtp:[{DEFAULT_ROUTE}]\n"
    )
    mc = run / "sendmail.mc"
    mc.write_text(f"""\
divert(-1)
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `mta.sendmail.example')dnl
define(`QUEUE_DIR', `{run}/queue')dnl
define(`confTO_QUEUEWARN', `8s')dnl
define(`confTO_QUEUERETURN', `30s')dnl
define(`confTO_CONNECT', `3s')dnl
define(`confTO_ICONNECT', `3s')dnl
define(`confTO_INITIAL', `4s')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confQUEUE_LA', `100')dnl
define(`confREFUSE_LA', `100')dnl
define(`confDELAY_LA', `100')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe,MapInUnsafeDirPath')dnl
define(`confPID_FILE', `{run}/sendmail.pid')dnl
define(`confSTATUS_FILE', `{run}/statistics')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confSERVICE_SWITCH_FILE', `{run}/service.switch')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {far}')dnl
define(`confRUN_AS_USER', `root')dnl
define(`ALIAS_FILE', `')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
FEATURE(`mailertable', `text -k0 -v1 {mailertable}')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`accept_unqualified_senders')dnl
MAILER(`smtp')dnl
""")
    m4 = root / "usr/bin/m4"
    cf = run / "sendmail.cf"
    with cf.open("w") as out:
        subprocess.run([str(m4), f"-I{cf_dir}", str(cf_dir / "m4/cf.m4"), str(mc)], stdout=out, check=True)
    # Sendmail wants a fully qualified name for this host (or sleeps a minute) and looks it up through DNS:
    # a private /etc/hosts gives it one, and its service switch reads only that.
    hosts = run / "hosts"
    hosts.write_text(f"127.0.0.1 mta.sendmail.example {socket.gethostname()} localhost\n")
    (run / "service.switch").write_text("hosts files\naliases files\n")
    binds = private_etc(run, [("smmta", 60104), ("smmsp", 60105)]) + [(hosts, "/etc/hosts")]
    return in_namespace(
        binds, [str(root / "usr/libexec/sendmail/sendmail"), f"-C{cf}", "-bD", "-q3s", "-ODeliveryMode=background"]
    )


def sendmail_submit(root: Path, run: Path, case: str, rcpts: list[str], raw: bytes, sender: str) -> None:
    """Handed over on the command line (RFC 3461 options as -N/-R/-V); delivered in the background, retried by
    the daemon's queue runs."""
    argv = [str(root / "usr/libexec/sendmail/sendmail"), f"-C{run}/sendmail.cf", "-odb", "-f", sender]
    argv += ["-N", "success,failure,delay", "-R", "hdrs", "-V", f"{case.upper()}-ENVID", *rcpts]
    binds = private_etc(run, [("smmta", 60104), ("smmsp", 60105)]) + [(run / "hosts", "/etc/hosts")]
    proc = in_namespace(binds, argv, stdin=subprocess.PIPE)
    proc.communicate(raw, timeout=30)


COURIER_USER = ("courier", 60106)


def courier(root: Path, run: Path, port: int, far: int) -> subprocess.Popen:
    """courierd in the foreground, from the unpacked packages laid over /usr and /etc; /var/lib/courier (its
    queue) and /run/courier are private folders. Mail is handed over with Courier's own sendmail
    (`courier_submit`, in the same namespace), so no SMTP listener is needed: `port` is unused."""
    etc = run / "etc"
    shutil.copytree(root / "etc/courier", etc / "courier", symlinks=True)
    control = {
        "me": "mta.courier.example",
        "defaultdomain": "courier.example",
        "locals": "mta.courier.example",
        # every domain to its recipient server; an empty domain is Courier's "all other domains"
        "esmtproutes": "".join(f"{domain}: [{address}],{far}\n" for domain, address in ROUTES.items())
        + f": [{DEFAULT_ROUTE}],{far}\n",
        "queuetime": "40s",
        "warntime": "10s",
        "retryalpha": "5s",
        "retrybeta": "3",
        "retrygamma": "5s",
        "retrymaxdelta": "1",
        "esmtptimeoutconnect": "3s",
        "esmtptimeouthelo": "4s",
        "esmtptimeout": "4s",
    }
    for name, text in control.items():
        (etc / "courier" / name).write_text(text if text.endswith("\n") else text + "\n")
    var_lib, var_run = run / "var-lib", run / "var-run"
    shutil.copytree(root / "var/lib/courier", var_lib / "courier", symlinks=True)
    (var_lib / "courier/sts").mkdir()
    (var_run / "courier").mkdir(parents=True)
    for folder in (var_lib / "courier", var_run / "courier"):
        for path in (folder, *folder.rglob("*")):
            os.chown(path, COURIER_USER[1], COURIER_USER[1])
    binds = courier_binds(run)
    # What courierctl.start does, minus its background: the environment from /etc/courier/courierd, then courierd.
    argv = ["sh", "-c", "cd /usr; set -a; . /etc/courier/courierd; exec /usr/lib/courier/courier/courierd"]
    # Its own session, so that stopping it reaches the module processes it starts (`stop_mta`).
    return in_namespace(binds, argv, etc_layer=etc, usr_layer=root / "usr", start_new_session=True)


def courier_binds(run: Path) -> list[tuple[Path, str]]:
    return private_etc(run, [COURIER_USER]) + [(run / "var-lib", "/var/lib"), (run / "var-run", "/run")]


def courier_submit(daemon: subprocess.Popen, case: str, rcpts: list[str], raw: bytes, sender: str) -> None:
    """Courier's sendmail, run inside courierd's mount namespace (nsenter), with RFC 3461 options as -N/-R/-V."""
    argv = ["nsenter", "-t", str(daemon.pid), "-m", "--", "/usr/sbin/sendmail", "-f", sender]
    argv += ["-N", "success,fail,delay", "-R", "hdrs", "-V", f"{case.upper()}-ENVID", *rcpts]
    subprocess.run(argv, input=raw, timeout=30, check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


DMA_CASES = [case for case, spec in CASES.items() if not spec.get("temporary")]


def dma_submit(root: Path, run: Path, far: int, case: str, rcpts: list[str], raw: bytes, sender: str) -> None:
    """dma is not a daemon: each message is queued and delivered by the dma process it was given to.

    It only knows a smart host, so each message goes out with a config that points at its recipients' server.
    """
    target = ROUTES.get(rcpts[0].rpartition("@")[2], DEFAULT_ROUTE)
    etc = run / f"etc-{case}"
    (etc / "dma").mkdir(parents=True)
    spool = run / "spool"
    spool.mkdir(exist_ok=True)
    spool.chmod(0o1777)  # dma drops root for the mail user once it has read its config
    (etc / "dma/dma.conf").write_text(
        f"SMARTHOST {target}\nPORT {far}\nSPOOLDIR {spool}\nMAILNAME mta.dma.example\nNULLCLIENT\n"
    )
    (etc / "dma/auth.conf").write_text("")
    proc = in_namespace([], [str(root / "usr/sbin/dma"), "-f", sender, *rcpts], etc_layer=etc, stdin=subprocess.PIPE)
    proc.communicate(raw, timeout=30)


# --- Messages, labels ----------------------------------------------------------------------------------------


def sender_for(mta: str, case: str) -> str:
    """A Postwerk-shaped return path (b- + 32 hex + 12 hex), unique per MTA and case."""
    digest = f"{zlib.crc32(f'{mta}/{case}'.encode()):08x}"
    return f"b-{digest * 4}{digest}abcd@{BOUNCE_DOMAIN}"


def message(mta: str, case: str, rcpts: list[str]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Acme <hello@acme.example>"
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = f"Your order ({case})"
    msg["Message-ID"] = make_msgid(idstring=case.replace("_", "-"), domain="acme.example")
    msg["X-Postwerk-Message-Id"] = f"0190c0de-0000-7000-8000-{zlib.crc32(f'{mta}/{case}'.encode()):012x}"
    body = "Thanks for your order.\n"
    if case == "message_too_large":
        body += ("x" * 76 + "\n") * 2000
    msg.set_content(body)
    return msg.as_bytes()


def submit_smtp(port: int, case: str, rcpts: list[str], raw: bytes, sender: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        smtp.ehlo("client.acme.example")
        dsn = smtp.has_extn("dsn")
        smtp.mail(sender, ["RET=HDRS", f"ENVID={case.upper()}-ENVID"] if dsn else [])
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt, ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{rcpt}"] if dsn else [])
            if code >= 300:
                raise RuntimeError(f"{rcpt} refused at submission: {code} {text!r}")
        smtp.data(raw)


def is_warning(raw: bytes) -> bool:
    """A delay warning, by the MTA's own words (Action: delayed, or the warning subjects of the non-DSN MTAs)."""
    head = raw[:20000].decode("utf-8", "replace").lower()
    if "envelope expired" in head:  # OpenSMTPD 6.8 reports its expiry as "delayed", Status 4.4.7: it gave up
        return False
    subject = next((line for line in head.splitlines() if line.startswith("subject:")), "")
    return "action: delayed" in head or "warning" in subject or "delayed" in subject or "delay" in subject


def is_success(raw: bytes) -> bool:
    head = raw[:20000].decode("utf-8", "replace").lower()
    return "action: delivered" in head or "action: relayed" in head


def expected(case: str, warning: bool, named: list[str]) -> dict:
    """The labels a notice should get, from the case table."""
    spec = CASES[case]
    recipients = []
    for rcpt, label in spec["rcpts"].items():
        if label == "delivered":
            if rcpt in named:  # a DSN that reports the delivered recipient too (NOTIFY=SUCCESS)
                recipients.append({"address": rcpt, "kind": "soft", "reason": "other", "action": "delivered"})
            continue
        if warning:
            recipients.append({"address": rcpt, "kind": "soft", "reason": spec["temporary"], "action": "delayed"})
            continue
        reason, kind = label or REPLIES[rcpt.partition("@")[0]][2:]
        recipients.append({"address": rcpt, "kind": kind, "reason": reason, "action": "failed"})
    return {"type": "bounce", "recipients": recipients}


def run_mta(mta: str, work: Path) -> int:
    root = unpack(work, mta)
    run = work / f"run-{mta}-{os.getpid()}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    run.chmod(0o755)
    far, port = free_port(), free_port()
    captured, far_end = start_far_end(far)
    senders: dict[str, str] = {}
    proc = None
    try:
        cases = DMA_CASES if mta == "dma" else list(CASES)
        if mta != "dma":
            starter = {"exim": exim, "opensmtpd": opensmtpd, "sendmail": sendmail, "courier": courier}[mta]
            proc = starter(root, run, port, far)
            if mta == "courier":
                time.sleep(2)
            elif not wait_port(port):
                raise RuntimeError(f"{mta} did not start listening")
        for case in cases:
            rcpts = list(CASES[case]["rcpts"])
            sender = sender_for(mta, case)
            senders[sender.lower()] = case
            raw = message(mta, case, rcpts)
            if mta == "courier":
                courier_submit(proc, case, rcpts, raw, sender)
            elif mta == "sendmail":
                sendmail_submit(root, run, case, rcpts, raw, sender)
            elif mta == "dma":
                # dma delivers one recipient per process; the multi-recipient case is one message to three.
                dma_submit(root, run, far, case, [r for r in rcpts if "fine@" not in r], raw, sender)
            else:
                submit_smtp(port, case, rcpts, raw, sender)
        print(f"{mta}: submitted {len(cases)} messages; waiting for notices", file=sys.stderr)
        # Every case ends in one failure notice (temporary ones warn first); the queue lifetimes are 30 s, but
        # OpenSMTPD waits out its built-in 5-minute greeting timeout on the silent server before it gives up.
        deadline = time.monotonic() + (480 if mta == "opensmtpd" else 150)
        while time.monotonic() < deadline and not set(cases) <= finished(list(captured), senders):
            time.sleep(1)
        time.sleep(3)
    finally:
        if proc is not None:
            stop_mta(mta, proc)
        stop_far_end(far_end)
    return save(mta, captured, senders, run)


def stop_mta(mta: str, proc: subprocess.Popen) -> None:
    if mta == "courier":  # courierd's modules run in its session (start_new_session): end them all
        os.killpg(proc.pid, 15)
    else:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def case_of(raw: bytes, senders: dict[str, str]) -> str | None:
    text = raw.decode("utf-8", "replace").lower()
    return next((case for sender, case in senders.items() if sender in text), None)


def finished(captured: list[bytes], senders: dict[str, str]) -> set[str]:
    """The cases whose final failure notice has come back."""
    return {case_of(raw, senders) for raw in captured if not is_warning(raw)}


def save(mta: str, captured: list[bytes], senders: dict[str, str], run: Path) -> int:
    out = OUT / FOLDERS[mta]
    out.mkdir(exist_ok=True)
    written = 0
    seen: dict[str, int] = {}
    for raw in captured:
        text = raw.decode("utf-8", "replace").lower()
        case = case_of(raw, senders)
        if case is None or is_success(raw) and "action: failed" not in text:
            continue
        warning = is_warning(raw)
        name = case + ("_delay_warning" if warning else "_expired" if CASES[case].get("temporary") else "")
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name += f"_{seen[name]}"
        (out / f"{name}.eml").write_bytes(raw)
        write_label(out / f"{name}.eml", case, warning)
        written += 1
    print(f"{mta}: wrote {written} notices to {out}", file=sys.stderr)
    return written


# Exim's delay warning names the address and, for a refused or silent connection, no reason at all: what such a
# notice says is "delayed", reason unknown.
SILENT_WARNINGS = {("exim_mta", "connection_refused"), ("exim_mta", "timeout")}


def write_label(eml: Path, case: str, warning: bool) -> None:
    raw = eml.read_bytes()
    text = raw.decode("utf-8", "replace").lower()
    # Listed in a delivery-status block (a DSN may report the delivered recipient too, NOTIFY=SUCCESS).
    named = [r for r in CASES[case]["rcpts"] if re.search(rf"final-recipient: *rfc822; *{re.escape(r)}", text)]
    # dma sends one notice per failed recipient and names it in X-Original-To.
    only = re.search(r"^x-original-to: <?([^>\s]+)>?", text, re.MULTILINE)
    label = expected(case, warning, named)
    if only:
        label["recipients"] = [r for r in label["recipients"] if r["address"] == only.group(1)]
    for recipient in label["recipients"]:
        if recipient["action"] == "delivered":  # as the DSN says: "relayed" where the far end gives no DSN (Courier)
            block = rf"final-recipient: *rfc822; *{re.escape(recipient['address'])}\r?\n(?:[a-z-]+:.*\n){{0,4}}?"
            said = re.search(block + r"action: *(\w+)", text)
            recipient["action"] = said.group(1) if said else "delivered"
    if warning and (eml.parent.name, case) in SILENT_WARNINGS:
        for recipient in label["recipients"]:
            recipient["reason"] = "other"
    eml.with_suffix(".json").write_text(json.dumps(label, indent=2) + "\n")


def relabel() -> None:
    """Rewrite every <case>.json beside the saved notices from the case table (after a change to the labels)."""
    for folder in FOLDERS.values():
        for eml in sorted((OUT / folder).glob("*.eml")):
            name = eml.stem
            warning = "_delay_warning" in name
            case = re.sub(r"(_delay_warning|_expired)?(_\d+)?$", "", name)
            write_label(eml, case, warning)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mta", default="exim,opensmtpd,sendmail,dma,courier")
    parser.add_argument("--work", default="/tmp/postwerk-mtas")
    parser.add_argument("--relabel", action="store_true", help="only rewrite the .json labels of saved notices")
    args = parser.parse_args()
    if args.relabel:
        relabel()
        return 0
    if os.geteuid() != 0:
        print("run as root (the MTAs need unshare -m and their own users)", file=sys.stderr)
        return 1
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    failed = []
    for mta in args.mta.split(","):
        try:
            if not run_mta(mta, work):
                failed.append(mta)
        except Exception as exc:  # report and go on with the next MTA
            print(f"{mta}: {exc}", file=sys.stderr)
            failed.append(mta)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
