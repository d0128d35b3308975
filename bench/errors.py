"""The one exception family for user mistakes; the CLI maps it to exit code 2 and one line."""

from __future__ import annotations


class BenchInputError(Exception):
    """Bad input from the user: a scenario file, a model name, a CLI argument.

    `source` names the file (or argument) and `field` the dotted path inside it, so the message
    tells the user exactly where to look.
    """

    def __init__(self, source: str, message: str, field: str | None = None):
        self.source = str(source)
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        return f"{where}: {self.message}"
