"""Errors a user can cause and fix, shown by the CLI as one line."""


class CommandError(RuntimeError):
    """A command failed for a reason the user can fix; the message says how."""
