"""Mail infrastructure that knows nothing of Postwerk's own rules: it imports nothing of `sending`."""
