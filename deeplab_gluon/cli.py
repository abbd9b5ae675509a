"""Command-line plumbing shared by the evaluate, predict and export jobs.

User mistakes end as ONE line on stderr, ``<job>: error: <what and where>``, with exit code 2:
argparse's own errors (unknown flag, bad number) included, which it would otherwise print as a
usage block followed by the message.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Tuple


class UsageError(Exception):
    """A flag or an input the user must fix; the message is the one line to print."""


class JobArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def fail(prog: str, message) -> int:
    """Print ``<prog>: error: <message>`` as one line on stderr; returns the exit code 2."""
    text = " ".join(str(message).split())  # no embedded newlines: one line, always
    print(f"{prog}: error: {text}", file=sys.stderr)
    return 2


def fail_all(prog: str, problems) -> int:
    """Print every problem found before the work, one line each; returns the exit code 2."""
    for problem in problems:
        fail(prog, problem)
    return 2


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (the style of train.py's flags)."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0/1 or true/false, got {text!r}")


def parse_scales_flag(text: str) -> Tuple[float, ...]:
    """``--scales 0.5,0.75,1.0`` -> (0.5, 0.75, 1.0), as an argparse type."""
    from .inference import parse_scales

    try:
        return tuple(parse_scales(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("--scales ", "", 1)) from None


def add_switch(parser: argparse.ArgumentParser, name: str, help_text: str, default: bool = False) -> None:
    """A boolean flag usable bare (``--flip``) or with a value (``--flip 1``, ``--flip 0``)."""
    parser.add_argument(f"--{name}", type=parse_bool, nargs="?", const=True, default=default, metavar="0|1",
                        help=help_text)


def open_checkpoint_flag(path) -> Tuple[Path, dict]:
    """``(file, meta)`` of the checkpoint ``--checkpoint`` names (see ``checkpoint.open_checkpoint``);
    :class:`UsageError` ``--checkpoint: <why>`` where it cannot be used."""
    from .checkpoint import CheckpointError, open_checkpoint

    try:
        return open_checkpoint(path)
    except CheckpointError as err:
        raise UsageError(f"--checkpoint: {err}") from None


def output_problem(path: Path, flag: str, folder: bool) -> Optional[str]:
    """Why ``path`` cannot be written as a folder (``folder``) or a file, or None.

    Checked before the work, so that a long evaluation does not end in a traceback at its last step.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return f"{flag} {path} exists and is not a folder"
    if not folder and path.is_dir():
        return f"{flag} {path} is a folder"
    ancestor = path if folder else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{flag} {path}: {ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK):
        return f"{flag} {path}: {ancestor} is not writable"
    return None
