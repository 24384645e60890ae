"""Webhooks: every event pushed to the organization's endpoints, signed, retried until it lands.

`signing` (pure: the Postwerk-Signature header), `transport` (one POST, guarded against SSRF), `endpoints`
(creating, changing, rotating, disabling endpoints), `fanout` (events to pending deliveries, off the hot path),
`dispatch` (due deliveries, attempts, retries, replays, test sends) and `tasks` (the Celery side, queue
`webhooks`).
"""
