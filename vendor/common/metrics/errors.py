"""The one error type raised for bad metric requests (unknown name, missing detector, bad data)."""


class MetricError(ValueError):
    """A metric cannot be computed as asked; the message names the bad argument or file."""
