"""The one error type for user mistakes: bad data, bad params, a missing file.

The CLI prints it as a one-line message plus details and exits non-zero; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix: the message names the file, column or key."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {line}" for line in self.details)])
