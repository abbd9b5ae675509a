"""Declaring a flag on a job's config dataclass, in a leaf module: the runtime and serving layers
(``cpu_threads.ThreadsFlag``, ``precision.InferenceFlags``) declare flags without importing the
command-line machinery in :mod:`deeplab_gluon.cli`, which sits above them (docs/architecture.md)."""
import dataclasses
from typing import List, Sequence


def flag(help: str, **options) -> dict:
    """The metadata of a config field that is a flag: ``field(default=..., metadata=flag("help", ...))``.

    Options: ``name``, the flag's spelling where it differs from the field's (the original recipe's
    names live here only: ``backbone`` is ``--base_architecture``); ``aliases``; ``choices``; ``parse``,
    text -> value (default: from the field's type); ``metavar``; ``group``, a section of ``--help``;
    ``required``; ``recipe``, the value is part of what a job promises to keep (a resumed training run
    must keep it to continue exactly; the job reads this, the parser ignores it); ``positional``, the
    field is given by position, not by a flag (e.g. ``compare RUN_A RUN_B``; a list field takes one or more);
    ``shown_default``, the default as ``--help`` shows it where the value differs from what one types.
    """
    return {"help": help, **options}


def changed_flags(config, groups: Sequence[str]) -> List[str]:
    """The flags (``--name``) of ``config``'s fields in the ``--help`` sections ``groups`` whose value is
    not the field's default, i.e. that were given on the command line; a mode that does not use those
    sections refuses them rather than silently doing nothing."""
    changed = []
    for field in dataclasses.fields(config):
        if "help" not in field.metadata or field.metadata.get("group") not in groups:
            continue
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        if getattr(config, field.name) != default:
            changed.append(f"--{field.metadata.get('name') or field.name}")
    return changed
