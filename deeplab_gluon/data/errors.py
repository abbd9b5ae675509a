"""The one exception type for bad or missing data on disk."""


class DataError(ValueError):
    """A dataset, split list, image or label file is missing or unreadable.

    The message always names the offending path, so that scripts can print it on one line
    (exit status 2 when found before the work, 1 during it) instead of a traceback.
    """
