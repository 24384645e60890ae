"""An event's details in words, as the message timeline and the activity feed show them."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime

from sending.models import Event

_POLICY_NAMES = {
    "opportunistic": "none (opportunistic TLS)",
    "mta-sts-testing": "MTA-STS testing",
    "mta-sts-enforce": "MTA-STS enforce",
    "dane": "DANE",
}


def tls_policy_words(policy: dict) -> str:
    """ "MTA-STS enforce (id 2026): failure, certificate-expired" and the like, for a delivery attempt."""
    name = _POLICY_NAMES.get(str(policy.get("policy")), str(policy.get("policy")))
    if policy.get("policy_id"):
        name += f" (id {policy['policy_id']})"
    words = f"{name}: {policy.get('result', '')}"
    if policy.get("failure"):
        words += f", {policy['failure']}"
    problem = policy.get("sts_problem")
    if isinstance(problem, dict) and problem.get("failure"):
        words += f"; MTA-STS policy problem: {problem['failure']}"
    return words


def describe(event: Event) -> dict:
    """An event's details in words: the SMTP reply, and the facts worth a glance."""
    details = event.details or {}
    smtp = details.get("smtp") or {}
    reply = " ".join(str(smtp[k]) for k in ("code", "enhanced", "text") if smtp.get(k))
    facts: list[tuple[str, object]] = []
    if details.get("mx_host"):
        facts.append(("MX host", details["mx_host"]))
    if "tls" in details:
        facts.append(("TLS", "yes" if details["tls"] else "no"))
    policy = details.get("tls_policy")
    if isinstance(policy, dict) and policy.get("policy"):
        facts.append(("TLS policy", tls_policy_words(policy)))
    if details.get("attempt"):
        facts.append(("Attempt", details["attempt"]))
    if details.get("next_attempt_at"):
        facts.append(("Next attempt", parse_datetime(details["next_attempt_at"]) or details["next_attempt_at"]))
    for key in ("kind", "reason", "status", "source", "feedback_type"):
        if details.get(key):
            facts.append((key.replace("_", " ").capitalize(), details[key]))
    if not reply and details.get("diagnostic"):
        reply = details["diagnostic"]
    return {"event": event, "reply": reply, "facts": facts}
