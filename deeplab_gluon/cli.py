"""Command lines declared once: a job's flags are the fields of its config dataclass.

Each field carries its help (and choices, parser, flag name) in ``field(metadata=flag(...))``;
:func:`build_parser` turns the dataclass into an ``argparse`` parser and :func:`run_job` wraps every
job's ``main()``: parse, check (``config.problems()``), run, and map failures to exit codes, the same
in every job (train, evaluate, predict, export and the scripts):

- 2, a usage error: the command cannot be carried out as given, found before the work starts: a bad
  flag value, an input a flag names that is missing, unreadable or does not fit (a checkpoint, a data
  folder, an image list), an output that cannot be written, a run folder that another run holds or
  whose checkpoints disagree with the flags. Fix the command (or wait for the other run);
- 1, a failure: the work started and could not finish: bad data met during the run, an image that
  could not be read, a full disk, diverging losses, a failed export check;
- 130: interrupted (Ctrl-C, SIGTERM).

Every error is ONE line on stderr, ``<job>: error: <what and where>``, argparse's own included.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from .config_file import ConfigFileError, config_tokens

# Re-exported: defined in the leaf modules so that the layers below the commands can use them.
from .errors import DataError, JobError, UsageError, mxnet_reason  # noqa: F401
from .flags import changed_flags, flag  # noqa: F401

USAGE, FAILURE, INTERRUPTED = 2, 1, 130


class JobArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def fail(prog: str, message, code: int = USAGE) -> int:
    """Print ``<prog>: error: <message>`` as one line on stderr; returns ``code``."""
    text = " ".join(str(message).split())  # no embedded newlines: one line, always
    print(f"{prog}: error: {text}", file=sys.stderr)
    return code


# ------------------------------------------------------------------------------------------ declaring

def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off``."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected 0/1 or true/false, got {text!r}")


def comma_separated(kind: type) -> Callable[[str], Tuple]:
    """A parser of ``1,2,4`` into a tuple of ``kind``."""
    noun = {int: "integers", float: "numbers"}.get(kind, "values")

    def parse(text: str) -> Tuple:
        try:
            return tuple(kind(part.strip()) for part in str(text).split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be comma-separated {noun}, got {text!r}") from None

    parse.__name__ = f"comma-separated {noun}"  # argparse names the type in its error message
    return parse


def parse_scales(text: str) -> Tuple[float, ...]:
    """``--scales 0.5,0.75,1.0`` -> (0.5, 0.75, 1.0); refuses empty or non-positive scales."""
    scales = comma_separated(float)(text)
    if not scales or any(scale <= 0 for scale in scales):
        raise argparse.ArgumentTypeError(f"must be positive numbers, got {text!r}")
    return scales


def parse_path(text: str) -> Path:
    """A file or folder name; refuses an empty one (``Path("")`` would quietly be the working folder)."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


parse_path.__name__ = "path"  # argparse names the type in its error message


def _parser_for(annotation) -> Tuple[Callable, dict]:
    """(type, extra add_argument keywords) for a field's annotation."""
    annotation = _unoptional(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Path:
        return parse_path, {}
    if annotation is bool:
        return parse_bool, {"nargs": "?", "const": True, "metavar": "0|1"}
    if origin in (tuple, typing.Tuple) and len(args) == 2 and args[1] is Ellipsis:
        return comma_separated(args[0]), {}
    if origin in (list, typing.List):
        return args[0], {"nargs": "+", "action": "extend"}
    if origin in (tuple, typing.Tuple):  # a fixed number of values, e.g. (height, width)
        return args[0], {"nargs": len(args)}
    return annotation, {}


def build_parser(config_class, prog: str, description: Optional[str] = None) -> JobArgumentParser:
    """An argparse parser with one flag per field of ``config_class`` that carries :func:`flag` metadata."""
    parser = JobArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(config_class)
    groups = {}
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if "help" not in meta:
            continue
        kind, extra = _parser_for(hints[field.name])
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        shown = default if not isinstance(default, tuple) else ",".join(map(str, default))
        shown = meta.get("shown_default", shown)  # the default as typed, e.g. --aspp_or_vortex 1 for "aspp"
        required, name, group = meta.get("required", False), meta.get("name"), meta.get("group")
        help_text = meta["help"] if default in (None, "", ()) or required else f"{meta['help']} (default: {shown})"
        if group and group not in groups:
            groups[group] = parser.add_argument_group(group)
        names = [f"--{name or field.name}"] + [f"--{alias}" for alias in meta.get("aliases", ())]
        options = dict(extra, dest=field.name, type=meta.get("parse", kind), default=default, help=help_text,
                       choices=meta.get("choices"), required=required)
        if "metavar" in meta or (name and "metavar" not in extra):
            options["metavar"] = meta.get("metavar") or name.upper()
        if meta.get("positional"):  # argparse names a positional by its dest and refuses `required`
            names = [options.pop("dest")]
            options.pop("required")
        groups.get(group, parser).add_argument(*names, **options)
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    return parser


CONFIG_HELP = ("a JSON file of flag values, e.g. a run folder's config.json or a recipe; flags given on the "
               "command line override it")


# ------------------------------------------------------------------------------------------- running

def parse_config(config_class, prog: str, argv: Optional[Sequence[str]] = None, description: Optional[str] = None):
    """The config the command line ``argv`` describes (``--config FILE`` values first, the command line's
    own flags over them); :class:`UsageError` for a bad flag or config file."""
    parser = build_parser(config_class, prog, description)
    hints = typing.get_type_hints(config_class)
    argv = list(sys.argv[1:] if argv is None else argv)
    tokens = _config_file_tokens(parser, hints, argv) + argv
    values = vars(parser.parse_args(tokens))
    values.pop("config")
    for name, value in values.items():  # nargs=N gives a list where the field is a fixed-size tuple
        if isinstance(value, list) and typing.get_origin(_unoptional(hints[name])) is tuple:
            values[name] = tuple(value)
    config = config_class(**values)
    complete = getattr(config, "completed", None)  # e.g. TrainConfig: model flags from --init_from's checkpoint
    return complete(given_flags(parser, tokens)) if complete else config


def given_flags(parser: argparse.ArgumentParser, tokens: List[str]) -> set:
    """The fields ``tokens`` (a config file's and the command line's) set, as opposed to left at their default."""
    defaults = {action.dest: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        return set(vars(parser.parse_args(tokens))) - {"config"}
    finally:
        for action in parser._actions:
            action.default = defaults[action.dest]


def _config_file_tokens(parser: JobArgumentParser, hints: dict, argv: List[str]) -> List[str]:
    """The tokens of the ``--config`` file named in ``argv`` (none without one), each checked on its own
    so that a bad value is reported with the file's name."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--config")
    path = finder.parse_known_args(argv)[0].config
    if path is None:
        return []
    if not str(path).strip():
        raise UsageError("--config: must not be empty")
    actions = {action.dest: action for action in parser._actions if action.dest in hints}
    try:
        tokens = config_tokens(path, actions, hints)
    except ConfigFileError as err:
        raise UsageError(str(err)) from None
    required = [action for action in actions.values() if action.required]
    for action in required:  # a required flag may come from the command line: check the file's values only
        action.required = False
    try:
        parser.parse_args(tokens)
    except UsageError as err:
        raise UsageError(f"--config {path}: {err}") from None
    finally:
        for action in required:
            action.required = True
    return tokens


def _unoptional(annotation):
    if typing.get_origin(annotation) is typing.Union:
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation


def run_job(prog: str, config_class, work: Callable, argv: Optional[Sequence[str]] = None,
            description: Optional[str] = None) -> int:
    """Parse ``argv`` into ``config_class``, print every ``config.problems()`` (exit 2), then
    ``work(config)``; one line and exit 2 for a :class:`UsageError`, 1 for a :class:`JobError`, a
    ``DataError`` met during the work or an ``OSError``, 130 when interrupted."""
    try:
        config = parse_config(config_class, prog, argv, description)
        problems = [problem for problem in config.problems() if problem]
        for problem in problems:
            fail(prog, problem)
        if problems:
            return USAGE
        if getattr(config, "threads", None) is not None:
            _apply_threads(config.threads, restart=argv is None)
        return work(config) or 0
    except UsageError as err:
        return fail(prog, err, USAGE)
    except KeyboardInterrupt as stop:
        print(f"{prog}: {stop or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED
    except (JobError, DataError, OSError) as err:
        return fail(prog, err, FAILURE)


def _apply_threads(threads: int, restart: bool) -> None:
    """``--threads``: restart this process with the count when MXNet is loaded (a command), or refuse
    it (``main(argv)`` called from Python, where a restart would replace the caller)."""
    from .cpu_threads import ThreadsError, use_threads

    try:
        use_threads(threads, restart=restart)
    except (ValueError, ThreadsError) as err:
        raise UsageError(str(err)) from None


def output_problem(path: Path, flag_name: str, folder: bool) -> Optional[str]:
    """Why ``path`` cannot be written as a folder (``folder``) or a file, or None.

    Checked before the work, so that a long evaluation does not end in a traceback at its last step.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return f"{flag_name} {path} exists and is not a folder"
    if not folder and path.is_dir():
        return f"{flag_name} {path} is a folder"
    ancestor = path if folder else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{flag_name} {path}: {ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK):
        return f"{flag_name} {path}: {ancestor} is not writable"
    return None


def checkpoint_flag(path, flag_name: str = "--checkpoint"):
    """:func:`deeplab_gluon.checkpoint.checkpoint_flag`, imported when called so that importing the flag
    machinery does not load MXNet (the scripts that only parse flags start fast)."""
    from .checkpoint import checkpoint_flag as open_checkpoint_flag

    return open_checkpoint_flag(path, flag_name)
