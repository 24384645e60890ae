"""Sender domains: creation and records, the DNS checks and their results, the send-time guard."""
