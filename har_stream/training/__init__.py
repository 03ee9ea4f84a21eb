"""Training-side code: HAPT loading, labelled windows through the serving pipeline, training,
evaluation and model cards.

Nothing here imports TensorFlow at module import time; the Keras parts import it inside the
functions that need it, so `har-stream --help` stays instant.
"""
