"""Pure classification of what arrives at the bounce address: DSNs, provider bounces, ARF complaints, auto-replies.

`parse.parse_report(raw)` takes the message bytes and returns a `Report`; `reasons.classify_reply(...)` classifies
one SMTP reply and is shared with the delivery code. No database, no Django models.
"""
