"""The spellings of cacaomap 0.1 that still work in 0.2, each with a one-line notice.

Removed in 0.3 (see ``CHANGELOG.md``): flat command names (``cacaomap composite``),
snake_case flags (``--reference_period``), booleans with a value (``--evidence true``),
lists and mappings as JSON or YAML (``--label_map '{1: 3}'``, ``--bbox '[1, 2, 3, 4]'``),
comma lists (``--redo scene,service``) and ``--train_args`` as a JSON list. This module is
the only place that knows them: deleting it (and its two calls in :mod:`cacaomap.main`)
removes them.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from cacaomap.grammar import Signature, flag

REMOVED_IN = "0.3"

#: Old command -> new ``group command``.
OLD_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("imagery", "synth"),
    "array-chips": ("imagery", "array-chips"),
    "composite": ("imagery", "composite"),
    "export": ("model", "export"),
    "evaluate": ("model", "evaluate"),
    "crossval": ("model", "crossval"),
    "active-learning": ("model", "active-learning"),
    "classify": ("maps", "classify"),
    "baseline": ("maps", "baseline"),
    "sample-points": ("maps", "sample-points"),
    "suggest-labels": ("labels", "suggest"),
    "serve": ("service", "run"),
    "bento": ("service", "bento"),
    "demo-serve": ("dev", "demo"),
    "bench": ("dev", "bench"),
    "mlflow-ui": ("dev", "mlflow-ui"),
}

#: String flags that took a JSON list of command-line words in 0.1.
_WORD_LISTS = {"train_args"}


def notice(old: str, new: str) -> str:
    """The one line printed for an old spelling."""
    return (f"cacaomap: {old!r} is deprecated, use {new!r} (the old spelling goes in "
            f"{REMOVED_IN}; see CHANGELOG.md)")


def modern_command(args: list[str]) -> tuple[list[str], list[str]]:
    """Rewrite an old command name into its group and command."""
    if args and args[0] in OLD_COMMANDS:
        group, name = OLD_COMMANDS[args[0]]
        return [group, name, *args[1:]], [notice(f"cacaomap {args[0]}",
                                                 f"cacaomap {group} {name}")]
    return args, []


def modern_flags(args: list[str], signature: Signature) -> tuple[list[str], list[str]]:
    """Rewrite 0.1 flag spellings for the command of ``signature``."""
    out: list[str] = []
    notices: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--") or token.startswith("--no-"):
            out.append(token)
            continue
        name, eq, inline = token[2:].partition("=")
        dest = name.replace("-", "_")
        if flag(dest) not in signature.flags or dest == "config":
            out.append(token)
            continue
        new_flag = flag(dest)
        before = len(notices)
        values = [inline] if eq else []
        if dest in signature.switches:
            if not eq and i < len(args) and args[i].lower() in ("true", "false"):
                values = [args[i]]
                i += 1
            if values:
                on = values[0].lower() == "true"
                new = new_flag if on else "--no-" + new_flag[2:]
                notices.append(notice(f"--{name} {values[0]}", new))
                out.append(new)
            else:
                out.append(new_flag)
        else:
            if not eq and i < len(args):
                values = [args[i]]
                i += 1
            out.append(new_flag)
            out += _modern_values(dest, values, signature, name, notices)
        if "_" in name and len(notices) == before:  # one notice a flag
            notices.append(notice(f"--{name}", new_flag))
    return out, notices


def _modern_values(dest: str, values: list[str], signature: Signature, name: str,
                   notices: list[str]) -> list[str]:
    """Expand a JSON/YAML or comma list given as one value."""
    if len(values) != 1:
        return values
    value = values[0]
    kind = signature.lists.get(dest)
    if dest in _WORD_LISTS and value.startswith("["):
        words = yaml.safe_load(value)
        new = shlex.join(str(w) for w in words)
        notices.append(notice(f"--{name} '{value}'", f"--{dest.replace('_', '-')} '{new}'"))
        return [new]
    if kind is None:
        return values
    if value[:1] in "[{":
        loaded = yaml.safe_load(value)
        if isinstance(loaded, dict):
            items = [f"{k}={v}" for k, v in loaded.items()]
        elif isinstance(loaded, list):
            items = [str(v) for v in loaded]
        else:
            return values
        notices.append(notice(f"--{name} '{value}'", f"--{dest.replace('_', '-')} "
                              + " ".join(items)))
        return items
    if "," in value and (kind.base is not Path or not Path(value).exists()):
        items = [v.strip() for v in value.split(",") if v.strip()]
        notices.append(notice(f"--{name} {value}", f"--{dest.replace('_', '-')} "
                              + " ".join(items)))
        return items
    return values
