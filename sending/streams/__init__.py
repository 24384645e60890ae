"""Message streams: transactional and broadcast mail kept apart (service, send options, delivery lanes)."""
