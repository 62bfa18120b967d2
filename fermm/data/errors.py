"""The data layer's error (a leaf, so every data module can raise it)."""


class DataError(ValueError):
    """A source that cannot be read as asked; the message names the row or file."""
