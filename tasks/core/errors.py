"""Errors that end a command with one clear line and exit status 1."""

from __future__ import annotations


class UserFacingError(Exception):
    """A problem with input, configuration or environment, told in one line (no PII)."""

    exit_code = 1


class ConfigError(UserFacingError):
    """A configuration value is missing or not allowed."""


class InputRejected(UserFacingError):
    """An input file was refused as a whole; ``where`` names file/table/column/row."""

    def __init__(self, message: str, *, file: str | None = None, table: str | None = None,
                 column: str | None = None, row_key: str | None = None) -> None:
        self.file, self.table, self.column, self.row_key = file, table, column, row_key
        where = ", ".join(
            f"{label} {value}" for label, value in
            (("file", file), ("table", table), ("column", column), ("row", row_key)) if value
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = message


class SecretMissing(InputRejected):
    """The secret needed to open an input is not configured; the input itself may be fine."""
