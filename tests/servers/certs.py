"""Throwaway self-signed certificates for STARTTLS tests (the platform's own generator)."""

from mail.tls_certs import make_self_signed

__all__ = ["make_self_signed"]
