"""Drivers behind har-stream's Kafka ports (`har_stream.kafka.ports`), one per client.

`memory` is an in-process cluster for fast tests (no broker, no client library); the others
wrap a client library. Each keeps the semantics of the ports' module doc, which the contract
suite (tests/contract/) checks for all of them alike. A driver imports the ports and its own
library only.
"""
