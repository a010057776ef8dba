"""Errors a user can cause and fix; the CLI prints them as one line, no traceback."""


class ShopsenseError(Exception):
    """A problem with the user's input, files or arguments (not a bug in shopsense)."""


class NotFittedError(ShopsenseError):
    """A model was asked for something before ``fit`` (or ``load``)."""
