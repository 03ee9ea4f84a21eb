"""har-stream: real-time human activity recognition for streams of wearable sensor data."""

__version__ = "0.1.0"
