"""The front door: a short README whose quick start runs and whose links lead somewhere."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.model_factory import write_local_model
from tests.service_helpers import REPO

README = REPO / "README.md"


def quick_start() -> list[list[str]]:
    """The commands of the README's quick start, continuation lines joined."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines()
            if line.strip()]


def test_the_readme_is_a_front_door_of_at_most_200_lines() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_the_readme_links_lead_somewhere() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


@pytest.mark.slow
def test_every_command_of_the_quick_start_runs(tmp_path: Path) -> None:
    commands = quick_start()
    assert len(commands) >= 4 and all(c[0] == "cacaomap" for c in commands)
    model = write_local_model(tmp_path / "model", pixel_size_m=10.0)
    env = os.environ | {"CACAOMAP_MODEL": str(model)}
    work = tmp_path / "work"
    work.mkdir()
    for command in commands:
        run = subprocess.run([sys.executable, "-m", "cacaomap", *command[1:]], cwd=work,
                             env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, (command, run.stderr[-2000:])
        assert "deprecated" not in run.stderr
    assert {p.name for p in (work / "land" / "plots").iterdir()} >= {
        "plots.geojson", "plots.csv", "plots.json", "evidence"}
    assert any((work / "land" / "plots" / "evidence").glob("*.png"))
    assert (work / "land" / "classes_2024.confidence.tif").is_file()
