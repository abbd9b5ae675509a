"""Config files: a job's flag values in a JSON file (``--config FILE``), read into command-line tokens.

A config file is one JSON object whose keys are a job's flags, spelled as the field (``backbone``, as a
run folder's ``config.json`` records them) or as the flag (``base_architecture``), and whose values are
JSON values of the flag's type: ``{"backbone": "resnet_v2_18", "crop_size": 192, "decoder": true,
"scale_range": [0.5, 2.0]}``. ``"_base_": "common.json"`` (mmsegmentation's key; a path relative to the
file) first takes another file's values, which this file's own then override, so that a recipe's phases
share their values without repeating them. ``null`` leaves a flag at its default.

The values become command-line tokens put before the user's own, so the flags given on the command line
win and every value goes through the same parsing and checks as a typed flag. A key that is no flag of
the job, a value of the wrong JSON type, an unreadable file or a ``_base_`` loop is a
:class:`ConfigFileError` naming the file and the key.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Dict, List

BASE_KEY = "_base_"
# Keys a run folder's config.json records beside the flags (what the run found, not what it was told).
RECORDED_ONLY = ("cpu_threads",)


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names the file (and the key)."""


def read_values(path, _seen=()) -> Dict[str, object]:
    """The ``{key: value}`` of the JSON config file ``path``, its ``_base_`` files' values included
    (this file's own win)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigFileError(f"--config {path}: '{BASE_KEY}' files include each other")
    try:
        values = json.loads(path.read_text())
    except OSError as err:
        raise ConfigFileError(f"--config {path}: cannot read it ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"--config {path}: not valid JSON ({err})") from None
    if not isinstance(values, dict):
        raise ConfigFileError(f"--config {path}: expected a JSON object of flag values, got {type(values).__name__}")
    base = values.pop(BASE_KEY, None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigFileError(f"--config {path}: '{BASE_KEY}' must be a file name, got {base!r}")
    return {**read_values(path.parent / base, _seen + (path.resolve(),)), **values}


def _json_type_problem(value, annotation) -> str:
    """Why ``value`` (from JSON) does not fit a field annotated ``annotation``, or ''."""
    if typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        ok = isinstance(value, bool) or value in (0, 1)
        return "" if ok else "expected true/false (or 0/1)"
    if annotation is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if annotation is float:
        return "" if isinstance(value, (int, float)) and not isinstance(value, bool) else "expected a number"
    if origin in (tuple, list, typing.Tuple, typing.List):
        items = value if isinstance(value, list) else None
        if items is None:
            return "expected a list"
        kind = args[0] if args else str
        return next((problem for problem in (_json_type_problem(item, kind) for item in items) if problem), "")
    # text flags: strings; numbers too where the flag reads them (--aspp_or_vortex 2, --gpus 0)
    ok = isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool))
    return "" if ok else "expected a string"


def _tokens(value, annotation, nargs) -> List[str]:
    """The command-line text of a JSON value that passed :func:`_json_type_problem`."""
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if isinstance(value, list):
        texts = [str(item) for item in value]
        return texts if nargs not in (None, "?") else [",".join(texts)]
    return [str(value)]


def config_tokens(path, actions, hints) -> List[str]:
    """Command-line tokens (``["--crop_size", "192", ...]``) for the config file ``path`` of a job whose
    parser has ``actions`` (``{dest: argparse.Action}``) and whose config dataclass has type ``hints``."""
    by_name = {}
    for dest, action in actions.items():
        for option in action.option_strings:
            by_name[option.lstrip("-")] = action
        by_name[dest] = action
    tokens = []
    for key, value in read_values(path).items():
        if key in RECORDED_ONLY or value is None:
            continue
        action = by_name.get(key)
        if action is None:
            raise ConfigFileError(f"--config {path}: unknown key '{key}' (not a flag of this command)")
        problem = _json_type_problem(value, hints[action.dest])
        if problem:
            raise ConfigFileError(f"--config {path}: '{key}': {problem}, got {json.dumps(value)}")
        if isinstance(value, list) and action.nargs not in (None, "?") and not value:
            continue  # an empty list: the flag's own (empty) default
        tokens += [action.option_strings[0], *_tokens(value, hints[action.dest], action.nargs)]
    return tokens
