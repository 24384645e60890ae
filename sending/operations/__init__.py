"""Running the platform: health, the metrics endpoint, retention."""
