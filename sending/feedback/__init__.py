"""What comes back: the inbound MX's reports (bounces, complaints, DMARC reports), suppressions, opens, clicks and
unsubscribes."""
