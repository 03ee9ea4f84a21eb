"""The pure core of har-stream: records, codecs, causal signal processing, windowing,
per-device state, the pipeline and the recognizer.

No Kafka, no TensorFlow, no I/O: everything here is a function of its inputs and injected
collaborators (the model protocol in `core.model`, a clock), so training, offline evaluation
and the live service run the same code. Imports nothing else of `har_stream`.
"""
