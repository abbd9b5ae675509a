"""The one exception type for bad or missing data on disk, and reading a small text file with it."""


class DataError(ValueError):
    """A dataset, split list, image or label file is missing or unreadable.

    The message always names the offending path, so that scripts can print it on one line
    (exit status 2 when found before the work, 1 during it) instead of a traceback.
    """


def read_text(path, what: str) -> str:
    """The text of the file ``path``; ``DataError("cannot read <what> <path>: <why>")`` when it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {what} {path}: {error}") from None
