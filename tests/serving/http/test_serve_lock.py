"""The Bento's requirements are the tested environment's pins (requirements.lock)."""

from __future__ import annotations

import re
import tomllib

from serving.http.bento import locked_requirements
from tests.service_helpers import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_pin_of_the_bento_is_the_locks_and_the_serving_floor_is_in_it() -> None:
    lock = {_name(line): line.strip().lower().replace("_", "-") for line in
            (REPO / "requirements.lock").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    bento = [line.lower().replace("_", "-") for line in locked_requirements()]
    assert bento and all("==" in line for line in bento)  # exact pins only
    for line in bento:
        assert lock.get(_name(line)) == line, f"{line} is not the lock's {lock.get(_name(line))}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in [*project["dependencies"],
                                 *project["optional-dependencies"]["service"]]}
    assert wanted | {"onnxruntime"} <= {_name(line) for line in bento}
    assert not {"torch", "lightning", "torchgeo", "mlflow"} & {_name(x) for x in bento}
