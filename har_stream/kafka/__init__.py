"""Kafka for har-stream: its own ports (`ports`), one driver per client library behind them
(`drivers/`), client factories (TLS, SASL, fail-fast connect: `clients`), topic creation.

May import `har_stream.core` only; the service drives these clients, never the reverse.
"""
