"""Reply-text rules: the wording real MTAs and providers use, mapped to a bounce reason.

Enhanced status codes (RFC 3463) are often missing, generic (5.0.0, 5.5.0, 5.7.1) or misused (Microsoft sends
5.1.10 and 5.4.1 for unknown recipients, Yahoo 5.7.9 for policy blocks), so the text is read as well.

Two strengths:
- STRONG rules are precise phrases ("user unknown", "blocked using zen.spamhaus", "DMARC policy"); they win over
  any enhanced status code.
- WEAK rules are vague phrases ("mailbox unavailable" is RFC 5321's stock text for every 550); they only decide
  when the status code is absent or generic.

Order matters inside each list: the first match wins, so the more specific phrases come first (a Spamhaus URL
contains "spam" but means a blocklist; "domain does not exist" must not read as "user does not exist").
Patterns run on lower-cased text with runs of white space collapsed to one space, capped in length, and avoid
nested quantifiers so that hostile input cannot make them backtrack for long.
"""

from __future__ import annotations

import re

MAX_TEXT = 4096  # a diagnostic longer than this is a transcript; its start says what happened


def _rules(*pairs: tuple[str, str]) -> list[tuple[str, re.Pattern[str]]]:
    return [(reason, re.compile(pattern)) for reason, pattern in pairs]


STRONG = _rules(
    # TLS required (RFC 3207 530 "Must issue a STARTTLS command first", RFC 8689 REQUIRETLS): a property of the
    # connection, never of the address nor of our sender, even when it comes in reply to MAIL FROM.
    ("policy_rejected", r"starttls|tls (?:is )?required|requires? (?:a )?(?:secure|encrypted|tls)|encryption required"),
    # Authentication (RFC 7208 SPF, RFC 6376 DKIM, RFC 7489 DMARC): Gmail 5.7.26/5.7.27, Microsoft 5.7.509.
    ("auth_failure", r"\b(?:spf|dkim|dmarc)\b"),
    ("auth_failure", r"sender policy framework|unauthenticated (?:e-?mail|mail|message)"),
    ("auth_failure", r"(?:fails? to pass|failed) authentication|authentication (?:checks|information)"),
    # Greylisting is an ordinary deferral, not a rate limit nor a policy block.
    ("other", r"grey-?list|gray-?list"),
    # Rate limits and throttling (Gmail 4.7.28 / "unusual rate", Yahoo TS0x, Microsoft 4.7.650 / 5.7.750...).
    ("rate_limited", r"rate[- ]limit|unusual rate|sending rate|rate of (?:unsolicited|incoming|messages)"),
    ("rate_limited", r"throttl|too many (?:messages|mails|e-?mails|connections|concurrent|recipients|sessions)"),
    ("rate_limited", r"temporarily deferred due to unexpected volume|\bts0[1-4]\b|exceeded .{0,40}(?:rate|quota)"),
    ("rate_limited", r"mail flood|too much mail|sending limit|resources for sender exhausted"),
    # Our envelope sender refused (Postfix smtpd_sender_restrictions, Sendmail's check_mail, Exim's sender
    # verification), before the domain and user rules: "Sender address rejected: Domain not found" is about us.
    ("sender_rejected", r"sender address rejected|domain of sender address|sender (?:verify|verification) failed"),
    ("sender_rejected", r"sender (?:address |domain )?(?:is )?(?:rejected|unknown|invalid|not valid)"),
    ("sender_rejected", r"sender domain (?:\S+ )?(?:does not|doesn't|did not) exist|(?:bad|invalid|unknown) sender"),
    # The same said of the return path or MAIL FROM (qmail "does not like sender address", "your envelope sender
    # domain must exist", Sendmail "Domain name required for sender address", "Return-path domain not found").
    ("sender_rejected", r"does not like sender|required for sender address|bad outbound sender"),
    (
        "sender_rejected",
        r"(?:envelope sender|return[- ]path|mail[- ]from|sender'?s?)(?: (?:address|domain|<?<address>>?))* "
        r"(?:is |was )?(?:must (?:exist|resolve|be valid)|does not exist|doesn't exist|not found|does not resolve"
        r"|not (?:a )?(?:valid|resolvable)|(?:could|can) ?not be (?:resolved|verified)|unroute?able|unverifiable)",
    ),
    ("sender_rejected", r"(?:unroute?able|unverifiable|non-?existent) (?:envelope )?sender"),
    # Microsoft Exchange Online: an unknown recipient under Directory Based Edge Blocking.
    ("user_unknown", r"recipient address rejected: access denied|recip(?:ient)?notfound|recipnotfound"),
    # Domain problems (RFC 7505 null MX; DNS NXDOMAIN; "domain is not reachable", often with a 5.5.0).
    ("domain_not_found", r"domain (?:is )?(?:not reachable|unreachable)"),
    ("domain_not_found", r"host or domain name not found|domain (?:name )?not found|no such domain"),
    ("domain_not_found", r"\bhost unknown|unknown host|host not found|no such host|\bhost [a-z0-9.-]{1,253} not found"),
    ("domain_not_found", r"domain (?:does not|doesn't|did not) exist|unrouteable (?:mail )?(?:address|domain)"),
    ("domain_not_found", r"\bnxdomain\b|null mx|nonexistentdomain|non-existent domain|unknown domain"),
    ("domain_not_found", r"couldn't find any host named|could not find any host named|no mx (?:record|host)"),
    ("domain_not_found", r"all relevant mx records point to non-existent hosts|domain (?:is )?not (?:valid|in use)"),
    ("domain_not_found", r"the domain .{1,80} couldn't be found|dns error: .{0,80}(?:not found|no such)"),
    # Moved (551 User not local, RFC 5321 §3.4; X.1.6).
    ("has_moved", r"user has moved|mailbox has moved|has moved|no longer (?:with|at|employed|works)"),
    ("has_moved", r"user not local; please try|forwarding address|changed (?:his|her|their) (?:e-?mail )?address"),
    # Mailbox full, before "too large" (a mailbox "size limit" is a quota; Postfix local(8) hitting
    # mailbox_size_limit says "error writing message: File too large").
    ("mailbox_full", r"error writing message: file too large|mailbox_size_limit"),
    ("mailbox_full", r"mailbox (?:is )?full|mail ?box (?:is )?full|inbox (?:is )?full|mailbox size limit"),
    ("mailbox_full", r"over (?:the )?(?:storage )?quota|quota (?:exceeded|exceed|full)|quotaexceeded|disk quota"),
    ("mailbox_full", r"exceeded (?:his|her|their|the) (?:storage|mailbox)|insufficient (?:storage|space) for"),
    ("mailbox_full", r"mailbox (?:is )?over|out of storage|not enough (?:storage|space) in (?:the )?mailbox"),
    # Disabled, suspended or inactive accounts.
    (
        "mailbox_disabled",
        r"(?:account|mailbox|user|address) (?:\S+ ){0,4}(?:is |has been |was )?"
        r"(?:disabled|suspended|deactivated|inactive|locked|discontinued|not active|blocked by the owner)",
    ),
    ("mailbox_disabled", r"(?:disabled|suspended|deactivated|inactive|locked) (?:account|mailbox|user)"),
    # Unknown users: the wording of Postfix, Sendmail, Exim, qmail, Exchange, Gmail, Yahoo, Outlook.com...
    ("user_unknown", r"user unknown|unknown user|no such user|user not found|user (?:does not|doesn't) exist"),
    ("user_unknown", r"(?:account|address|mailbox|recipient|user) (?:\S+ ){0,6}(?:does not|doesn't|did not) exist"),
    ("user_unknown", r"(?:invalid|unknown|bad|non-?existent|no such) (?:recipient|mailbox|address|local[- ]part)"),
    ("user_unknown", r"(?:recipient|mailbox|address) (?:not found|unknown|invalid|is invalid|not valid)"),
    ("user_unknown", r"no mailbox here by that name|not a valid (?:recipient|mailbox|user|address)"),
    ("user_unknown", r"doesn't have an? \S+ account|does not have an? \S+ account|addressee unknown"),
    ("user_unknown", r"not listed in (?:domino )?(?:directory|public name & address book)|couldn't be found"),
    ("user_unknown", r"unknown or illegal alias|unknown local part|no such person|is not a known user"),
    # Policy: blocklists, reverse DNS, relaying, sender rejected (before spam: "spamhaus" is a blocklist).
    ("policy_rejected", r"spamhaus|spamcop|barracuda|sorbs|\bsurbl\b|uceprotect|\brbl\b|dnsbl|\bbl\.|blocklist"),
    ("policy_rejected", r"black ?list|block ?list|blocked using|listed (?:at|on|in|by) |client host .{0,60}blocked"),
    ("policy_rejected", r"reverse (?:dns|lookup|hostname)|\brdns\b|\bptr\b|hostname .{0,40}does not resolve"),
    ("policy_rejected", r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)|not permitted to relay"),
    ("policy_rejected", r"sender (?:is )?(?:blocked|denied|not allowed)"),
    ("policy_rejected", r"client host rejected|banned sending ip|traffic not accepted from this ip|reputation"),
    ("policy_rejected", r"(?:your|the sending|sending) ip (?:address )?(?:is |has been )?(?:blocked|listed|banned)"),
    ("policy_rejected", r"rejected for policy reasons|not accepted for policy reasons|blocked for policy"),
    # Mailing lists refusing a post (Google Groups, Mailman, Sympa): the list's rule, not the address.
    ("policy_rejected", r"permission to post|not allowed to post|posting (?:is )?(?:restricted|not allowed)"),
    ("policy_rejected", r"only (?:members|subscribers) (?:can|may) post|non-?member post|awaiting moderat"),
    ("policy_rejected", r"not (?:from )?an? (?:list )?member|members[- ]only (?:list|group)"),
    # Content judged spam or a virus.
    ("spam_blocked", r"\bspam\b|unsolicited|\buce\b|junk mail|bulk mail|phish|malware|virus|infected"),
    ("spam_blocked", r"content (?:filter|rejected)|message content rejected|suspicious content|looks like spam"),
    # Too large.
    ("message_too_large", r"(?:message|mail|file|data) (?:size |length )?(?:is )?too (?:large|big|long)"),
    ("message_too_large", r"size exceeds|exceeds? (?:the )?(?:fixed |maximum |max |allowed )*(?:message )?size"),
    ("message_too_large", r"message length exceeds|message size .{0,30}exceed|maximum message size"),
    # Expiry: the reporting MTA gave up retrying.
    ("expired", r"retry timeout exceeded|in the queue too long|delivery (?:time )?expired|message expired"),
    ("expired", r"(?:could not|cannot|couldn't) (?:be delivered|send message) for (?:more than )?\d+ (?:day|hour)"),
    ("expired", r"retry time not reached for any host after a long failure period|too old"),
    # Network trouble.
    ("network_error", r"connection (?:timed out|refused|reset|lost|closed)|timed out|no route to host"),
    (
        "network_error",
        r"network error|network is (?:unreachable|down)|lost connection|loops back to myself|mail loop|too many hops",
    ),
    ("network_error", r"name service error|temporary failure in name resolution|dns (?:error|failure|timeout)"),
    ("network_error", r"tls (?:handshake|negotiation) failed|unable to connect|could not connect"),
)

WEAK = _rules(
    ("user_unknown", r"mailbox unavailable|recipient address rejected|recipient rejected|address rejected"),
    ("user_unknown", r"undeliverable address|no valid recipients|unknown recipient|rcpt to: .{0,40}rejected"),
    ("mailbox_disabled", r"mailbox (?:is )?not available|account (?:is )?not available"),
    ("policy_rejected", r"access denied|not authori[sz]ed|denied|blocked|prohibit|policy|refused"),
    ("system_error", r"insufficient system storage|system (?:error|failure)|internal (?:server )?error"),
    ("system_error", r"local configuration error|configuration problem|temporary (?:local )?(?:problem|failure)"),
    ("system_error", r"resources? temporarily unavailable|service (?:not available|unavailable)|try again later"),
)


def rule_name(reason: str, text: str) -> str:
    """The name a STRONG match is recorded under (`matched_by`): its reason, or "tls" for the TLS rule."""
    return "tls" if reason == "policy_rejected" and STRONG[0][1].search(text) else reason


# Addresses are replaced before the rules run: a local part or domain ("spam@", "blocked@", "@refused.example")
# is a name, not a reason.
_ADDRESS = re.compile(r"[^\s<>@\"'(),;:\[\]]{1,64}@[^\s<>@\"'(),;:\[\]]{1,253}")


def normalise(text: str) -> str:
    return " ".join(_ADDRESS.sub("<address>", text[:MAX_TEXT].lower()).split())


def first_match(rules: list[tuple[str, re.Pattern[str]]], text: str) -> str | None:
    """The reason (a `reasons.Reason` value) of the first rule whose pattern occurs in normalised text."""
    for reason, pattern in rules:
        if pattern.search(text):
            return reason
    return None
