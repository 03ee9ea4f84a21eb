"""One driver per Kafka client library behind har-stream's own ports (`kafka/ports.py`).

`librdkafka_*` (confluent-kafka: the service's default, for its CPU cost), `kafka_python_*`
(pure Python: the admin, the raw reader and the alternative client), `memory` (an in-process
cluster for fast tests). Build them through `kafka/clients.py`; nothing above `kafka/`
imports a driver module.
"""
