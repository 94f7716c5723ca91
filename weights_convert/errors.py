"""The one error type of the converter."""


class ConversionError(ValueError):
    """A checkpoint cannot be converted. The message is one line: `<file>: <problem>; <fix>`."""
