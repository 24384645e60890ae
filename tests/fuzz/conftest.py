"""The fuzz tests reuse the submission listener fixtures of the SMTP tests."""

from tests.test_smtp_submission import credential, smtp_server  # noqa: F401 - fixtures
