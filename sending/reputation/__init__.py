"""Reputation and limits: bounce and complaint rates, pauses, held mail, send limits, blocklists, overload."""
