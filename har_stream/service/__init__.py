"""`har-stream run`: the Kafka loop around the core recognizer.

Owns the loop (poll, decode, recognize, publish, commit), checkpoints, partition ownership and
the changelog, delivery, guards against hostile input, health, settings and every Prometheus
metric. May import `core`, `serving` and `kafka`; nothing below it imports the service.
"""
