"""Security tests reuse the listener fixtures of the SMTP and bounce tests (real listeners on loopback)."""

from tests.test_bounces import inbound  # noqa: F401 - fixture
from tests.test_smtp_submission import credential, smtp_server  # noqa: F401 - fixtures
