"""The one error type users see: bad input, reported in one line with exit code 2."""


class UsageError(ValueError):
    """Bad input from the user (an option, a spec, a file): one clear line, exit 2."""

    exit_code = 2
