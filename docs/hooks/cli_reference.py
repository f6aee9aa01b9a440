"""MkDocs hook: the CLI reference in ``cli.md``, generated from the command's own help.

The marker ``<!-- cli-reference -->`` is replaced by every command's ``--help``, group by
group, as :mod:`cacaomap.main` defines them: the page cannot drift from the command.
"""

from __future__ import annotations

import os
from typing import Any

MARKER = "<!-- cli-reference -->"


def cli_reference() -> str:
    """Markdown of every group and command with its help text."""
    os.environ["COLUMNS"] = "100"
    from cacaomap.grammar import build_parser
    from cacaomap.main import COMMANDS, GROUPS, top_help

    parts = ["```text", top_help(), "```", ""]
    for group, title in GROUPS.items():
        parts += [f"### {group}", "", title + ".", ""]
        if group == "train":
            parts += ["`cacaomap train fit|validate|test` is LightningCLI: its flags are "
                      "the config's keys (`--trainer.max_epochs 5`, "
                      "`--data.init_args.images DIR`), listed by "
                      "`cacaomap train fit --config experiments/demo.yaml --help`; see "
                      "[Training on your own data](training.md).", ""]
        for command in (c for c in COMMANDS if c.group == group):
            parser, _ = build_parser(f"cacaomap {command.path}", command.function())
            parts += [f"#### cacaomap {command.path}", "", "```text",
                      parser.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill the marker of the CLI page."""
    if MARKER in markdown:
        return markdown.replace(MARKER, cli_reference())
    return markdown
