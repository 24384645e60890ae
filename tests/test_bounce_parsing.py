"""The bounce / complaint / auto-reply classifier, run over the corpus in tests/data/bounces/ and hostile input.

Each tests/data/bounces/<source>/<name>.eml has <name>.json beside it: {"type", "recipients": [{"address", "kind",
"reason"[, "action"]}]}. The postfix/ ones were written by a real Postfix (see generate_postfix.py).
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from mail.bounces.parse import Report, parse_report
from mail.bounces.reasons import Classification, Kind, Reason, classify_reply

DATA = Path(__file__).parent / "data" / "bounces"
CORPUS = sorted(DATA.glob("*/*.eml"))
SOURCES = ("postfix", "exim", "qmail", "sendmail", "exchange", "gmail", "yahoo", "postfix_old", "plain", "arf")
SOURCES += ("autoreply", "malformed", "providers", "sender_side")
# Written by real MTAs run from their Debian packages (generate_mtas.py).
SOURCES += ("exim_mta", "opensmtpd_mta", "sendmail_mta", "dma_mta", "courier_mta")


def _expected(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def _summary(report: Report) -> dict:
    """Type and recipients, in address order (a notice lists its recipients in the MTA's order)."""
    recipients = [{"address": r.address, "kind": r.kind, "reason": r.reason} for r in report.recipients]
    return {"type": report.type, "recipients": sorted(recipients, key=lambda r: r["address"])}


def _want(expected: dict) -> dict:
    recipients = [{k: r[k] for k in ("address", "kind", "reason")} for r in expected["recipients"]]
    return {"type": expected["type"], "recipients": sorted(recipients, key=lambda r: r["address"])}


def _read(relative: str) -> bytes:
    return (DATA / relative).read_bytes()


@pytest.mark.parametrize("path", CORPUS, ids=[f"{p.parent.name}/{p.stem}" for p in CORPUS])
def test_corpus_message_is_classified_as_expected(path: Path) -> None:
    expected = _expected(path)
    report = parse_report(path.read_bytes())
    assert _summary(report) == _want(expected)
    wanted = {r["address"]: r for r in expected["recipients"]}
    for got in report.recipients:
        assert got.action == wanted[got.address].get("action", got.action)
        assert got.kind in (Kind.HARD, Kind.SOFT)
        assert got.reason in set(Reason)
        assert got.matched_by, "every classification records the rule that decided it"


def test_corpus_covers_every_source_and_reports_accuracy() -> None:
    counts: Counter[str] = Counter(p.parent.name for p in CORPUS)
    correct: Counter[str] = Counter(
        p.parent.name for p in CORPUS if _summary(parse_report(p.read_bytes())) == _want(_expected(p))
    )
    for source in SOURCES:
        print(f"{source:12} {correct[source]:3}/{counts[source]:3}")
    total, right = sum(counts.values()), sum(correct.values())
    print(f"{'total':12} {right:3}/{total:3} = {right / total:.1%}")
    assert all(counts[source] >= 4 for source in SOURCES), counts
    assert total >= 60
    assert all(p.with_suffix(".json").exists() for p in CORPUS)
    assert right / total >= 0.95
    reasons = {r["reason"] for p in CORPUS for r in _expected(p)["recipients"]}
    assert reasons == set(Reason), set(Reason) - reasons


# --- What a caller needs beyond type and reason ---------------------------------------------------------


def test_postfix_dsn_gives_correlation_fields() -> None:
    report = parse_report(_read("postfix/user_unknown.eml"))
    assert report.original_envelope_id == "USER_UNKNOWN-ENVID"
    assert report.original_sender.startswith("b-") and report.original_sender.endswith("@bounces.postwerk.example")
    assert report.original_message_id.startswith("<") and report.original_message_id.endswith("@acme.example>")
    assert "X-Postwerk-Message-Id" in report.postwerk_headers
    (rcpt,) = report.recipients
    assert (rcpt.status, rcpt.action, rcpt.remote_mta) == ("5.1.1", "failed", "127.0.0.1")
    assert rcpt.diagnostic.startswith("550 5.1.1 <nosuchuser@gmail.example>: Recipient address rejected")


def test_delayed_dsn_is_kept_but_is_not_a_failure() -> None:
    report = parse_report(_read("postfix/greylisted_delay_warning.eml"))
    assert report.type == "bounce"
    assert [(r.action, r.kind) for r in report.recipients] == [("delayed", "soft")]
    assert report.failures == []


def test_expired_dsn_is_a_soft_failure() -> None:
    report = parse_report(_read("postfix/greylisted_expired.eml"))
    assert [(r.action, r.reason, r.kind, r.status) for r in report.failures] == [("failed", "expired", "soft", "4.2.0")]


def test_generic_dsn_status_gives_way_to_the_specific_one_in_the_diagnostic() -> None:
    (rcpt,) = parse_report(_read("exim/user_unknown.eml")).recipients
    assert (rcpt.status, rcpt.reason, rcpt.kind) == ("5.1.1", "user_unknown", "hard")


def test_complaint_exposes_feedback_type_and_original() -> None:
    report = parse_report(_read("arf/yahoo_cfl_abuse.eml"))
    assert report.type == "complaint" and report.feedback_type == "abuse"
    assert report.original_sender == "b-0190c0de0000000000000000000000291b2c3d4e5f60@bounces.postwerk.example"
    assert report.original_message_id == "<promo-991@acme.example>"
    assert report.postwerk_headers == {"X-Postwerk-Message-Id": "0190c0de-0000-7000-8000-000000000029"}
    assert [(r.action, r.kind, r.reason) for r in report.recipients] == [("complained", "soft", "other")]
    assert report.failures == []


def test_complaint_envelope_id_comes_from_the_feedback_report() -> None:
    report = parse_report(_read("arf/rfc5965_headers_only.eml"))
    assert report.original_envelope_id == "PW-0190c0de-002b"
    assert report.original_message_id == "8787KJKJ3K4J3K4J3K4J3.mail@acme.example"


def test_autoreply_names_the_message_it_answers() -> None:
    report = parse_report(_read("autoreply/exchange_automatic_reply.eml"))
    assert report.type == "autoreply" and report.original_message_id == "<order-7790@acme.example>"
    assert report.failures == []


def test_bounce_of_a_bounce_has_a_null_original_sender() -> None:
    report = parse_report(_read("malformed/bounce_of_a_bounce.eml"))
    assert report.type == "bounce" and report.original_sender == ""
    assert report.original_message_id == "<20240514122959.8C7B6A5040@mx.double.example>"


def test_report_without_recipients_is_a_bounce_with_none() -> None:
    report = parse_report(_read("malformed/empty_delivery_status.eml"))
    assert (report.type, report.recipients, report.failures) == ("bounce", [], [])


# --- classify_reply: the same rules for synchronous SMTP replies -------------------------------------------

H, S = "hard", "soft"
REPLIES = [
    (
        550,
        "5.1.1",
        "<x@corp.example>: Recipient address rejected: User unknown in virtual mailbox table",
        "user_unknown",
        H,
    ),
    (
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist. Please try double-checking",
        "user_unknown",
        H,
    ),
    (550, "", "5.1.1 <jane@corp.example>... User unknown", "user_unknown", H),
    (550, "5.0.0", "<x@corp.example>: No such user here", "user_unknown", H),
    (550, "5.5.0", "Requested action not taken: mailbox unavailable (user does not exist)", "user_unknown", H),
    (550, "", "Requested action not taken: mailbox unavailable", "user_unknown", H),
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "user_unknown", H),
    (550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281)", "user_unknown", H),
    (554, "", "delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0]", "user_unknown", H),
    (550, "", "Sorry, no mailbox here by that name. (#5.1.1)", "user_unknown", H),
    (450, "4.1.1", "<x@corp.example>: Recipient address rejected: User unknown", "user_unknown", S),
    (
        550,
        "5.1.2",
        "Host or domain name not found. Name service error for name=x.example type=A",
        "domain_not_found",
        H,
    ),
    (556, "5.1.10", "Recipient address has null MX", "domain_not_found", H),
    (550, "", "Unrouteable address", "domain_not_found", H),
    (551, "5.1.6", "User has moved; please try <new@corp.example>", "has_moved", H),
    (551, "", "User not local; please try <new@corp.example>", "has_moved", H),
    (452, "4.2.2", "The email account that you tried to reach is over quota.", "mailbox_full", S),
    (552, "5.2.2", "Mailbox full", "mailbox_full", S),
    (550, "", "Quota exceeded (mailbox for user is full)", "mailbox_full", S),
    (550, "5.2.1", "The email account that you tried to reach is disabled.", "mailbox_disabled", S),
    (
        554,
        "",
        "delivery error: dd Sorry your message to x cannot be delivered. This mailbox is disabled (554.30)",
        "mailbox_disabled",
        S,
    ),
    (
        554,
        "5.7.1",
        "Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org",
        "policy_rejected",
        S,
    ),
    (550, "5.7.1", "Client host rejected: cannot find your reverse hostname, [192.0.2.10]", "policy_rejected", S),
    (550, "5.7.25", "The IP address sending this message does not have a PTR record setup", "policy_rejected", S),
    (554, "", "5.7.1 <x@corp.example>: Relay access denied", "policy_rejected", S),
    (550, "5.7.606", "Access denied, banned sending IP [192.0.2.10]", "policy_rejected", S),
    (
        554,
        "5.7.9",
        "Message not accepted for policy reasons. See https://postmaster.yahooinc.com/error-codes",
        "policy_rejected",
        S,
    ),
    (
        550,
        "5.7.1",
        "Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam",
        "spam_blocked",
        S,
    ),
    (554, "5.7.1", "Message rejected: virus found (Eicar-Test-Signature)", "spam_blocked", S),
    (
        550,
        "5.7.26",
        "Unauthenticated email from acme.example is not accepted due to domain's DMARC policy",
        "auth_failure",
        S,
    ),
    (550, "5.7.1", "SPF check failed: 192.0.2.10 is not allowed to send for acme.example", "auth_failure", S),
    (550, "5.7.20", "No passing DKIM signature found", "auth_failure", S),
    (552, "5.3.4", "Message size exceeds fixed limit", "message_too_large", S),
    (552, "5.2.3", "Your message exceeded Google's message size limits.", "message_too_large", S),
    (421, "4.7.0", "Try again later, closing connection. (EHLO)", "rate_limited", S),
    (
        421,
        "4.7.28",
        "Our system has detected an unusual rate of unsolicited mail originating from your IP",
        "rate_limited",
        S,
    ),
    (421, "4.7.0", "[TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume", "rate_limited", S),
    (451, "4.7.1", "<x@corp.example>: Recipient address rejected: Greylisted, see https://postgrey", "other", S),
    (0, "4.4.7", "Delivery time expired", "expired", S),
    (451, "4.4.1", "connect to mx.corp.example[192.0.2.25]:25: Connection timed out", "network_error", S),
    (451, "4.3.0", "Temporary local problem - please try later", "system_error", S),
    (452, "", "Insufficient system storage", "system_error", S),
    (550, "", "", "other", S),
    (0, "", "", "other", S),
    # Our envelope sender refused: never the recipient's hard bounce.
    (553, "5.1.8", "<b-x@bounces.acme.example>... Domain of sender address b-x@bounces.acme.example does not exist",
     "sender_rejected", S),
    (553, "5.1.8", "<b-x@bounces.acme.example>: Sender address rejected: Domain not found", "sender_rejected", S),
    (550, "5.1.7", "<b-x@bounces.acme.example>: Sender address rejected: User unknown", "sender_rejected", S),
    (550, "5.7.1", "<b-x@bounces.acme.example>: Sender address rejected: Access denied", "sender_rejected", S),
    (450, "4.1.8", "<b-x@bounces.acme.example>: Sender address rejected: Domain not found", "sender_rejected", S),
    (550, "", "Sender verify failed", "sender_rejected", S),
    (550, "5.1.7", "Bad sender's mailbox address syntax", "sender_rejected", S),
    (553, "5.1.8", "Return-path domain not found", "sender_rejected", S),
    (553, "5.1.8", "<b-1@bounces.example>: Domain not found", "sender_rejected", S),  # the status names the sender
    (553, "", "sorry, your envelope sender domain must exist (#5.7.1)", "sender_rejected", S),
    (550, "5.1.0", "The sender's domain doesn't exist", "sender_rejected", S),
    (550, "5.5.0", "Requested action not taken: domain is not reachable", "domain_not_found", H),
    (550, "", "Network is down", "network_error", S),
    (550, "5.7.1", "The message is not from a list member", "policy_rejected", S),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "status", "text", "reason", "kind"), REPLIES, ids=[r[2][:40] or "empty" for r in REPLIES]
)
def test_classify_reply(code: int, status: str, text: str, reason: str, kind: str) -> None:
    assert classify_reply(code, status, text) == Classification(Reason(reason), Kind(kind))


@pytest.mark.parametrize(
    ("code", "status", "text", "reason"),
    [
        (550, "", "Requested action not taken: mailbox unavailable", "sender_rejected"),
        (550, "5.1.1", "User unknown", "sender_rejected"),
        (553, "", "Requested action not taken: mailbox name not allowed", "sender_rejected"),
        (550, "", "", "sender_rejected"),
        (552, "5.3.4", "Message size exceeds fixed limit", "message_too_large"),  # SIZE= is refused at MAIL too
        (421, "4.7.0", "Try again later, closing connection.", "rate_limited"),
    ],
)
def test_a_reply_to_mail_from_is_about_the_sender_unless_it_names_the_message(
    code: int, status: str, text: str, reason: str
) -> None:
    assert classify_reply(code, status, text, at_mail_from=True) == Classification(Reason(reason), Kind.SOFT)


def test_classify_reply_never_raises_on_odd_text() -> None:
    for text in ("\x00" * 100, "5." * 5000, "a" * 1_000_000, "550-5.1.1 \udcff", "9.9.9 999"):
        assert isinstance(classify_reply(999, "x.y.z", text), Classification)


# --- Bad input never raises --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", "unknown"),
        (b"\r\n\r\n", "unknown"),
        (b"not a message at all", "unknown"),
        (random.Random(7).randbytes(50_000), "unknown"),
        # A delivery-status part, however broken, still says "this is a bounce".
        (
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\n\n--x\n'
            b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n\x00\xff\xfe garbage\n--x",
            "bounce",
        ),
        (b"Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822;\nAction:\nStatus: 9.9.9\n", "bounce"),
        # From MAILER-DAEMON: a bounce even though its body cannot be read.
        (
            b'From: MAILER-DAEMON@x.example\nContent-Type: multipart/mixed; boundary="' + b"a" * 5000 + b'"\n\n',
            "bounce",
        ),
        (
            b"Content-Type: multipart/report; boundary=b\n\n"
            + b"--b\nContent-Type: multipart/mixed; boundary=b\n\n" * 500,
            "unknown",
        ),
    ],
    ids=["empty", "blank", "text", "random", "bad-dsn", "bare-dsn", "long-boundary", "nested"],
)
def test_bad_input_gives_a_report_instead_of_raising(raw: bytes, kind: str) -> None:
    assert parse_report(raw).type == kind


def test_truncated_corpus_messages_never_raise() -> None:
    for path in CORPUS:
        raw = path.read_bytes()
        for cut in range(0, len(raw), max(1, len(raw) // 7)):
            assert isinstance(parse_report(raw[:cut]), Report)


def test_twenty_megabyte_bounce_is_parsed_from_its_first_part() -> None:
    raw = _read("exim/user_unknown.eml")
    head, _, tail = raw.partition(b"Thanks for your order.\n")
    attachment = (b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\n") * 260_000
    big = head + attachment + tail
    assert len(big) > 20 * 1024 * 1024
    report = parse_report(big)
    assert _summary(report)["recipients"] == [
        {"address": "nosuchuser@corp.example", "kind": "hard", "reason": "user_unknown"}
    ]


def test_twenty_megabyte_plain_text_bounce_is_capped() -> None:
    raw = _read("qmail/no_mailbox.eml").replace(b"Receipt attached.\n", b"x" * 20 * 1024 * 1024)
    report = parse_report(raw)
    assert [r.address for r in report.recipients] == ["jsmith@smallbiz.example"]


# --- The management command --------------------------------------------------------------------------------


def test_parse_bounce_command_prints_one_json_line_per_file() -> None:
    files = [DATA / "postfix/multi_recipient.eml", DATA / "arf/microsoft_jmrp.eml"]
    out = io.StringIO()
    call_command("parse_bounce", *map(str, files), "--json", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["file"] for line in lines] == list(map(str, files))
    assert [line["type"] for line in lines] == ["bounce", "complaint"]
    assert [(r["address"], r["kind"], r["reason"], r["status"]) for r in lines[0]["recipients"]] == [
        ("nosuchuser@gmail.example", "hard", "user_unknown", "5.1.1"),
        ("full@yahoo.example", "soft", "mailbox_full", "5.2.2"),
    ]
    assert {"address", "kind", "reason", "status", "diagnostic"} <= set(lines[1]["recipients"][0])


def test_parse_bounce_command_reports_unreadable_files_and_goes_on(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "parse_bounce", str(tmp_path / "missing.eml"), str(DATA / "qmail/no_host.eml"), stdout=out, stderr=err
        )
    assert excinfo.value.returncode == 1
    assert "missing.eml" in err.getvalue()
    assert "contact@typo-domain.example hard domain_not_found" in out.getvalue()


def test_parse_bounce_summary_prints_rates_per_family_and_reason(tmp_path: Path) -> None:
    for family, name in (("dma_mta", "user_unknown"), ("dma_mta", "mailbox_full"), ("providers", "ses_complaint")):
        (tmp_path / family).mkdir(exist_ok=True)
        for suffix in (".eml", ".json"):
            (tmp_path / family / f"{name}{suffix}").write_bytes((DATA / family / f"{name}{suffix}").read_bytes())
    # One wrong label: the summary counts it as a disagreement, it does not hide it.
    label = json.loads((tmp_path / "dma_mta/mailbox_full.json").read_text())
    label["recipients"][0]["reason"] = "user_unknown"
    (tmp_path / "dma_mta/mailbox_full.json").write_text(json.dumps(label))
    out = io.StringIO()
    call_command("parse_bounce", str(tmp_path), "--summary", stdout=out)
    lines = out.getvalue().splitlines()
    assert [" ".join(line.split()) for line in lines if line.startswith(("dma_mta", "providers", "total"))] == [
        "dma_mta 2/2 100.0% 2/2 100.0% 1/2 50.0%",
        "providers 1/1 100.0% 1/1 100.0% 1/1 100.0%",
        "total 3/3 100.0% 3/3 100.0% 2/3 66.7%",
    ]
    assert " ".join(next(line for line in lines if line.startswith("user_unknown")).split()) == "user_unknown 1/2 50.0%"
    assert "complaints recognised: 1/1 100.0%" in [" ".join(line.split()) for line in lines]
    assert "sender-side rejections classified hard: 0" in lines
    assert "disagrees: dma_mta/mailbox_full" in lines


def test_parse_bounce_summary_refuses_a_folder_without_labels(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as excinfo:
        call_command("parse_bounce", str(tmp_path), "--summary", stdout=io.StringIO())
    assert "no labelled messages" in str(excinfo.value)


def test_corpus_meets_the_issue_20_goals() -> None:
    """The figures `make bounce-report` prints, asserted (not timed): recipients, hard/soft, complaints, and
    no rejection of our sender ever classified hard."""
    from mail.bounces.evaluate import evaluate

    summary = evaluate(DATA)
    total = summary.total
    assert total.messages == len(CORPUS)
    assert total.recipients_ok / total.messages >= 0.98
    assert total.kind_ok / total.messages >= 0.95
    assert summary.complaints["ok"] == summary.complaints["total"] >= 8
    assert summary.sender_hard == []


@pytest.mark.parametrize(
    ("relative", "matched_by"),
    [
        ("dma_mta/sender_domain_rejected", "sentence/text:sender_rejected"),
        ("opensmtpd_mta/connection_refused_expired", "dsn/expired(status:4.4.7)"),
        # Courier gives up on a refused connection with Status 5.0.0 and "Network is down": no reply, so expiry
        ("courier_mta/connection_refused_expired", "dsn/expired(text:network_error)"),
        ("sendmail_mta/mailbox_disabled", "dsn/status:5.2.1"),  # the Diagnostic-Code's, not Sendmail's 5.1.1
        ("providers/ses_bounce_suppressed", "ses-json/text:user_unknown"),
        ("providers/zoho_user_unknown", "address_lines/text:user_unknown"),
        ("providers/yahoo_no_recipient_named", "original-to/text:user_unknown"),
        # never a hard bounce for a refusal of our sender, however the reply words it
        ("sender_side/return_path_domain_not_found_5_1_8", "dsn/text:sender_rejected"),
        ("sender_side/diagnostic_names_our_return_path", "dsn/names-sender(text:domain_not_found)"),
        ("sender_side/sendmail_v5_mail_from_transcript", "transcript_verdicts+mail-from/text:sender_rejected"),
        ("sender_side/qmail_does_not_like_sender", "angle_paragraphs/text:sender_rejected"),
        ("plain/mailman_list_rejection", "automatically_rejected/text:policy_rejected"),
        # no rule names anyone; of the original's two recipients the notice mentions one
        ("plain/names_one_of_two_original_recipients", "original-to-mentioned/text:user_unknown"),
        ("providers/ses_event_bounce", "ses-json/ses:Permanent/NoEmail"),
        ("providers/ses_event_complaint", "ses-json/complaint"),
        ("sender_side/gmail_sender_not_rfc5321_named", "dsn/text:sender_rejected"),
        ("sender_side/sender_null_mx_5_7_27", "dsn/status:5.7.27(text:domain_not_found)"),
        # the reply names our return path AND the recipient: about the recipient, still hard
        ("plain/recipient_unknown_with_sender_in_text", "dsn/text:user_unknown"),
        # a vague Diagnostic-Code ("550 Rejected", 5.0.0): the notice's own words decide
        ("plain/vague_diagnostic_context_says_more", "dsn/notice(text:user_unknown)"),
        # Sendmail's verdict "554 ... Service unavailable" gives way to the far end's "<<< 552 ... Mailbox full"
        ("sendmail/v5_mailbox_full_transcript", "transcript_verdicts/text:mailbox_full"),
        ("sendmail/v5_deferred_warning", "transcript_verdicts/text:network_error"),
    ],
)
def test_matched_by_names_the_rules_that_decided(relative: str, matched_by: str) -> None:
    report = parse_report(_read(f"{relative}.eml"))
    assert [r.matched_by for r in report.recipients] == [matched_by]


def test_an_ses_recipient_without_a_reply_takes_the_bounce_sub_type() -> None:
    report = parse_report(_read("providers/ses_bounce_mailbox_full.eml"))
    assert [(r.address, r.reason, r.matched_by) for r in report.recipients] == [
        ("max@corp.example", "mailbox_full", "ses-json/text:mailbox_full"),
        ("ola@corp.example", "mailbox_full", "ses-json/ses:Transient/MailboxFull"),
    ]


def test_a_notice_that_names_nobody_is_kept_with_its_classification() -> None:
    raw = b"From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\n\nDelivery failed: 552 5.2.2 mailbox full\n"
    report = parse_report(raw)
    assert (report.type, report.recipients) == ("bounce", [])
    assert report.unnamed is not None
    assert (report.unnamed.address, report.unnamed.reason, report.unnamed.kind) == ("", "mailbox_full", "soft")
