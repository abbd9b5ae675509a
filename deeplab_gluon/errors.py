"""The exceptions that every layer raises, in one leaf module that imports nothing from the package.

Each maps to one line on stderr and an exit code in :func:`deeplab_gluon.cli.run_job`: a
:class:`UsageError` (2) is found before the work starts and the user fixes the command; a
:class:`JobError` (1) is the work failing; a :class:`DataError` is bad or missing data on disk (2 when
a job's checks meet it, 1 during the work). Kept at the bottom of the house so that models, data,
checkpoints and commands can all raise them without importing each other (docs/architecture.md).
"""


class UsageError(Exception):
    """A flag or an input the user must fix; the message is the one line to print (exit code 2)."""


class JobError(RuntimeError):
    """The work itself failed (exit code 1); the message says why and what to do."""


class DataError(ValueError):
    """A dataset, split list, image or label file is missing or unreadable.

    The message always names the offending path, so that scripts can print it on one line
    (exit status 2 when found before the work, 1 during it) instead of a traceback.
    """


def mxnet_reason(err: Exception) -> str:
    """The reason in an ``MXNetError``'s text, whose first line is often just ``Traceback (most recent call last):``."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reason = (lines[-1] if lines else type(err).__name__).split("MXNetError:", 1)[-1].strip()
    if reason.startswith("Check failed:"):  # "Check failed: <condition>: <message>"
        reason = reason.split(": ", 2)[-1]
    return reason
