"""What every room reports: Prometheus metrics and the one-line-per-transaction operations log."""
