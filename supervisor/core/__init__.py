"""The supervisor's core services: the injectable clock, the shared timer, the event bus."""
