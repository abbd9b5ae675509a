"""The one exception type for bad or missing data on disk, and reading a small text file with it."""


from ..errors import DataError  # noqa: F401  (re-exported: it lives in the package's leaf module)


def read_text(path, what: str) -> str:
    """The text of the file ``path``; ``DataError("cannot read <what> <path>: <why>")`` when it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {what} {path}: {error}") from None
