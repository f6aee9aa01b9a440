"""The one flag grammar, as a user meets it in ``--help`` and on the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from cacaomap import compat
from cacaomap.grammar import UsageError, build_parser, parse_call
from cacaomap.main import COMMANDS, GROUPS, main
from cacaomap.sources import ImagerySource


def cacaomap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cacaomap", *args], capture_output=True,
                          text=True, timeout=120)


def test_top_help_lists_every_command_under_its_group() -> None:
    run = cacaomap("--help")
    assert run.returncode == 0
    text = run.stdout
    positions = [text.index(title) for title in GROUPS.values()]
    assert positions == sorted(positions)  # the groups in the data flow's order
    for command in COMMANDS:
        line = next(x for x in text.splitlines() if x.strip().startswith(command.path + " "))
        # each command sits under its own group's title
        title = GROUPS[command.group]
        assert text.rindex(title, 0, text.index(line)) >= 0
    assert "train fit|validate|test" in text


@pytest.mark.parametrize("path", [c.path for c in COMMANDS])
def test_every_help_says_what_it_writes_and_shows_examples(path: str) -> None:
    run = cacaomap(*path.split(), "--help")
    assert run.returncode == 0, run.stderr
    assert "\nwrites:\n" in run.stdout and "\nexamples:\n" in run.stdout
    examples = run.stdout.split("\nexamples:\n", 1)[1]
    assert f"cacaomap {path}" in examples
    assert "``" not in run.stdout  # docstring markup is not shown raw


def test_required_arguments_are_required_in_help() -> None:
    text = cacaomap("store", "build", "--help").stdout
    required = text.split("\nrequired:\n", 1)[1].split("\n\n", 1)[0]
    for flag in ("--region", "--reference-period", "--current-period", "--out"):
        assert flag in required
    usage = cacaomap("plots", "check", "--help").stdout.split("\n\n", 1)[0]
    assert usage.rstrip().endswith("plots")  # the positional, without brackets
    assert "[plots]" not in usage


def test_classify_help_says_it_writes_a_confidence_cog() -> None:
    writes = cacaomap("maps", "classify", "--help").stdout.split("\nwrites:\n", 1)[1]
    assert "confidence.tif" in writes


def _example(
    source_file: Path,
    *,
    period: str,
    source: ImagerySource,
    evidence: bool = False,
    register: bool = True,
    bbox: list[float] | None = None,
    label_map: dict[int, int] | None = None,
    mask: Literal["scl", "none"] = "scl",
) -> dict[str, object]:
    """A command of every kind of parameter.

    Args:
        source_file: A positional.
        period: A required flag.
        source: A flag group.
        evidence: A switch, off.
        register: A switch, on.
        bbox: A list.
        label_map: A mapping.
        mask: A choice.
    """
    return locals()


def _parse(*args: str) -> dict[str, object]:
    parser, signature = build_parser("cacaomap test example", _example)
    return parse_call(parser, signature, list(args))


def test_switches_lists_mappings_choices_and_groups() -> None:
    got = _parse("f.geojson", "--period", "a/b", "--evidence", "--no-register", "--bbox",
                 "-76.5", "-8.5", "-76", "-8", "--label-map", "1=1", "4=2", "--mask", "none",
                 "--stac", "cat.json", "--max-cloud", "60")
    assert got["source_file"] == Path("f.geojson")
    assert got["evidence"] is True and got["register"] is False
    assert got["bbox"] == [-76.5, -8.5, -76.0, -8.0]
    assert got["label_map"] == {1: 1, 4: 2}
    assert got["mask"] == "none"
    assert got["source"] == ImagerySource(stac=Path("cat.json"), max_cloud=60.0)
    defaults = _parse("f", "--period", "a/b")
    assert defaults["evidence"] is False and defaults["register"] is True
    assert defaults["source"] == ImagerySource()


@pytest.mark.parametrize(("args", "named"), [
    (["f"], "--period"),
    (["f", "--period", "a", "--mask", "clouds"], "--mask"),
    (["f", "--period", "a", "--label-map", "1:1"], "--label-map"),
    (["f", "--period", "a", "--bbox"], "--bbox"),
    (["f", "--period", "a", "--evidence", "yes"], "yes"),
])
def test_argument_errors_name_what_is_wrong(args: list[str], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        _parse(*args)


def test_config_file_gives_values_and_the_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("period: 2020/2021\nlabel_map: {1: 3}\nmask: none\nevidence: true\n")
    got = _parse("f", "--config", str(config), "--mask", "scl")
    assert got["period"] == "2020/2021" and got["label_map"] == {1: 3}
    assert got["evidence"] is True and got["mask"] == "scl"
    config.write_text("perod: x\n")
    with pytest.raises(UsageError, match="perod"):
        _parse("f", "--config", str(config))


def test_old_flag_spellings_are_rewritten_with_a_notice() -> None:
    _, signature = build_parser("cacaomap test example", _example)
    new, notices = compat.modern_flags(
        ["f", "--evidence", "true", "--register", "false", "--label_map", "{1: 3, 4: 2}",
         "--bbox", "[1, 2, 3, 4]", "--period=x"], signature)
    assert new == ["f", "--evidence", "--no-register", "--label-map", "1=3", "4=2",
                   "--bbox", "1", "2", "3", "4", "--period", "x"]
    assert len(notices) == 4 and all("deprecated" in n for n in notices)


def test_an_old_command_name_runs_the_new_one_with_a_notice(
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["mlflow-ui"])
    captured = capsys.readouterr()
    assert "mlflow ui --backend-store-uri" in captured.out
    assert captured.err.strip() == compat.notice("cacaomap mlflow-ui",
                                                 "cacaomap dev mlflow-ui")
    for old, (group, name) in compat.OLD_COMMANDS.items():
        assert any(c.group == group and c.name == name for c in COMMANDS), old


def test_the_docs_cli_reference_is_every_commands_help() -> None:
    import importlib.util

    from tests.service_helpers import REPO

    spec = importlib.util.spec_from_file_location(
        "cli_reference", REPO / "docs" / "hooks" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.on_page_markdown((REPO / "docs" / "cli.md").read_text(), page=None)
    assert hook.MARKER not in page
    for command in COMMANDS:
        assert f"#### cacaomap {command.path}\n" in page
        assert f"usage: cacaomap {command.path}" in page
