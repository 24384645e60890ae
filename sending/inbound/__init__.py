"""Inbound mail for customer domains: routes, acceptance at RCPT and DATA, parsing, the JSON post and its links.

The bounce and feedback addresses stay in sending.feedback; the SMTP handler asks here first whether an address
belongs to an inbound domain.
"""
