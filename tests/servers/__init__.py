"""Real loopback servers (DNS, SMTP) for the test suite; nothing here mocks."""

from tests.servers.certs import make_self_signed
from tests.servers.dns_server import DnsServer
from tests.servers.smtp_sink import Received, SmtpSink

__all__ = ["DnsServer", "Received", "SmtpSink", "make_self_signed"]
