"""Drivers behind har-stream's Kafka ports (`har_stream.kafka.ports`), one per client.

`librdkafka_*` (confluent-kafka: the service's default, for its CPU cost), `kafka_python_*`
(pure Python: the admin, the raw reader and the alternative client) and `memory*` (an
in-process cluster for fast tests: no broker, no client library). Each keeps the semantics of
the ports' module doc, which the contract suite (tests/contract/) checks for all of them
alike. Build them through `kafka/clients.py`; a driver imports the ports, its own library and
the kafka/ helpers below the factories (`connect`, `poison`, `raw_fetch`), never the
factories, and nothing above `kafka/` imports a driver module.
"""
