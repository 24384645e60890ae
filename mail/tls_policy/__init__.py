"""Transport security policies for outbound SMTP: MTA-STS (RFC 8461), DANE (RFC 7672) and TLS reporting
(RFC 8460). Infrastructure only: lookups, fetches, parsing and the per-host decision; what is cached where and
what a delivery records is sending.delivery.tls_policies' business."""
