"""Helpers for tests that talk to a real `bentoml serve`: RSS and result tables."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
#: Test outputs people look at (tables, screenshots), kept after the run.
ARTIFACTS = REPO / "tests" / "artifacts"


def server_rss_mb(pid: int) -> float:
    """Resident memory of a server and all its worker processes, in MB."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def show_table(capsys: pytest.CaptureFixture[str], title: str, columns: list[str],
               rows: list[list[str]], artifact: str) -> None:
    """Print a table to the terminal (past pytest's capture) and save it as JSON."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    with capsys.disabled():
        Console(width=160).print(table)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / artifact).write_text(json.dumps(
        [dict(zip(columns, row, strict=True)) for row in rows], indent=2))
