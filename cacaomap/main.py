"""The ``cacaomap`` command: its groups, its commands and the entry point.

``cacaomap <group> <command> [flags]``; the groups follow the data flow (imagery ->
training -> models -> maps -> labels -> store -> plots -> service), developer tools
apart. ``cacaomap train fit|validate|test`` is LightningCLI (configs under
``experiments/``); every other command is a typed function read by
:mod:`cacaomap.grammar`. Heavy imports happen inside the commands, so ``--help`` is
quick.

Every user error (bad arguments included) ends the command with one line, ``cacaomap
<command>: <what is wrong>``, and exit status 1, never a traceback;
``CACAOMAP_TRACEBACK=1`` shows the traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from cacaomap import compat
from cacaomap.grammar import UsageError, build_parser, parse_call, parse_doc

#: Set to see the traceback of a user error instead of its one-line message.
TRACEBACK_VARIABLE = "CACAOMAP_TRACEBACK"


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: where its function lives."""

    group: str
    name: str
    target: str  # "module:function", imported when the command runs or shows help

    @property
    def path(self) -> str:
        """How a user types it: ``store build``."""
        return f"{self.group} {self.name}"

    def function(self) -> Callable[..., Any]:
        """The typed function behind the command."""
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


#: The groups in the order of the data flow, with their titles.
GROUPS: dict[str, str] = {
    "imagery": "Imagery in: composites of real acquisitions, a synthetic landscape, chips",
    "train": "Training (LightningCLI: fit | validate | test --config experiments/*.yaml)",
    "model": "Models: export to ONNX, evaluate, cross-validate, active learning",
    "maps": "Class maps and the deforestation baseline",
    "labels": "Labels where there are none",
    "store": "The region's baseline store",
    "plots": "Plot checks (EUDR geolocation in, verdicts and evidence out)",
    "service": "The HTTP service",
    "dev": "Developer tools",
}

COMMANDS: tuple[Command, ...] = (
    Command("imagery", "composite", "cacaomap.imagery:composite"),
    Command("imagery", "stack-radar", "cacaomap.imagery:stack_radar"),
    Command("imagery", "synth", "cacaomap.imagery:synth"),
    Command("imagery", "array-chips", "cacaomap.imagery:array_chips"),
    Command("model", "export", "cacaomap.model:export"),
    Command("model", "evaluate", "training.evaluate:evaluate"),
    Command("model", "crossval", "training.crossval:crossval"),
    Command("model", "active-learning", "training.active_learning:active_learning"),
    Command("maps", "classify", "cacaomap.maps:classify"),
    Command("maps", "baseline", "cacaomap.maps:baseline"),
    Command("maps", "sample-points", "cacaomap.maps:sample_points"),
    Command("labels", "suggest", "cacaomap.labels:suggest"),
    Command("store", "build", "cacaomap.store:build"),
    Command("plots", "check", "cacaomap.plots:check"),
    Command("service", "run", "cacaomap.service:run"),
    Command("service", "bento", "cacaomap.service:bento"),
    Command("dev", "demo", "cacaomap.dev:demo"),
    Command("dev", "bench", "cacaomap.dev:bench"),
    Command("dev", "mlflow-ui", "cacaomap.dev:mlflow_ui"),
    Command("dev", "serve-lock", "cacaomap.dev:serve_lock"),
)

#: LightningCLI's subcommands of ``cacaomap train``.
TRAIN_COMMANDS = ("fit", "validate", "test")


def find(group: str, name: str) -> Command | None:
    """The command typed as ``group name``, if there is one."""
    return next((c for c in COMMANDS if c.group == group and c.name == name), None)


def summary(command: Command) -> str:
    """The first line of a command's docstring."""
    line = parse_doc(command.function()).description.splitlines()[0]
    return line.replace("``", "").rstrip(".")


def top_help() -> str:
    """``cacaomap --help``: the commands grouped the way the data flows."""
    lines = ["usage: cacaomap <group> <command> [flags]", "",
             "Land-cover classification for deforestation-free cocoa: imagery in, a model, "
             "class maps,", "a region's baseline store, plot verdicts.", ""]
    for group, title in GROUPS.items():
        lines.append(f"{title}:")
        if group == "train":
            lines.append(f"  {'train fit|validate|test':<26}Train, validate or test a "
                         "model (Lightning + TorchGeo)")
        for command in (c for c in COMMANDS if c.group == group):
            lines.append(f"  {command.path:<26}{summary(command)}")
        lines.append("")
    lines += ["Each command's flags, what it writes and examples: cacaomap <group> <command> "
              "--help.", "The grammar (switches, lists, errors) and the reference: docs/cli.md."]
    return "\n".join(lines)


def group_help(group: str) -> str:
    """``cacaomap <group> --help``."""
    lines = [f"usage: cacaomap {group} <command> [flags]", "", f"{GROUPS[group]}:"]
    if group == "train":
        lines.append("  fit | validate | test     LightningCLI; see cacaomap train fit --help")
    lines += [f"  {c.name:<24}{summary(c)}" for c in COMMANDS if c.group == group]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cacaomap`` console script (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    args, notices = compat.modern_command(args)
    command = " ".join(args[:2]) if args[:1] and args[0] in GROUPS else " ".join(args[:1])
    for notice in notices:
        print(notice, file=sys.stderr)
    try:
        _dispatch(args)
    except (ValueError, OSError) as err:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        raise SystemExit(user_error_line(command, err)) from None


def user_error_line(command: str, err: BaseException) -> str:
    """A user error (bad input, missing file) as the one line the command ends with."""
    message = " ".join(str(err).split()) or type(err).__name__
    hint = f" (see cacaomap {command} --help)" if isinstance(err, UsageError) else ""
    return f"cacaomap {command}: {message}{hint}"


def _dispatch(args: list[str]) -> None:
    if not args or args[0] in ("-h", "--help"):
        print(top_help())
        return
    group = args[0]
    if group not in GROUPS:
        raise UsageError(f"no command {group!r}; the groups are {', '.join(GROUPS)}")
    if group == "train":
        _train(args[1:])
        return
    if len(args) < 2 or args[1] in ("-h", "--help"):
        print(group_help(group))
        return
    found = find(group, args[1])
    if found is None:
        names = ", ".join(c.name for c in COMMANDS if c.group == group)
        raise UsageError(f"no command {args[1]!r} in {group}; it has {names}")
    parser, signature = build_parser(f"cacaomap {found.path}", found.function())
    rest, notices = compat.modern_flags(args[2:], signature)
    for notice in notices:
        print(notice, file=sys.stderr)
    kwargs = parse_call(parser, signature, rest)
    found.function()(**kwargs)


def _train(args: list[str]) -> None:
    """LightningCLI: its own parser, its own config grammar (``--trainer.max_epochs``)."""
    import warnings

    from training.lightning_cli import run_lightning_cli

    if not args or args[0] not in (*TRAIN_COMMANDS, "-h", "--help"):
        raise UsageError(f"train takes {' | '.join(TRAIN_COMMANDS)} (LightningCLI)")
    # sys.argv stays as it is: DDP re-executes it in each child process. LightningCLI
    # warns when both sys.argv and args are given; here that is by design.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    run_lightning_cli(args)


if __name__ == "__main__":
    main()
