"""A small Django project of its own that uses django-anymail's Postmark backend and its tracking webhook view,
unmodified, as an application moving from Postmark would: run in a subprocess (tests/test_compat_postmark_anymail.py)
pointed at a Postwerk server on loopback."""

# The inline image the application sends, which the test finds again at the recipient's MX.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
