"""ela: measure the Energy-Latency-Accuracy trade-offs of Transformer inference."""

__version__ = "0.1.0"


class ElaError(Exception):
    """A problem the user can fix (bad config, missing file, unsupported precision): no traceback needed."""
