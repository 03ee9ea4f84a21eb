"""Tools around the service, apart from it: the simulator (devices replayed into Kafka), the
demo, and the embedded Kafka-protocol broker they and the tests use.
"""
