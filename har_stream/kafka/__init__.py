"""Kafka for har-stream: client factories (TLS, SASL, fail-fast connect), the librdkafka
consumer and producer adapters, topic creation.

May import `har_stream.core` only; the service drives these clients, never the reverse.
"""
