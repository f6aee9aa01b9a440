"""The BentoML patches: each replaces upstream code this test pins.

If an upgrade of BentoML changes any function a fix replaces, this fails and names the
fix to re-check (the upstream bug may be gone, or the patch may no longer fit).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from serving.http import bentoml_fixes
from tests.service_helpers import REPO


@pytest.fixture(scope="module")
def upstream_digests() -> dict[str, str]:
    """Digests of the upstream code, read in a fresh interpreter (nothing patched)."""
    code = ("import json; from serving.http import bentoml_fixes as f; "
            "print(json.dumps({f'{m}:{a}': f.upstream_digest(m, a) "
            "for targets in f.UPSTREAM.values() for m, a, _ in targets}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return dict(json.loads(out))


@pytest.mark.parametrize("fix", sorted(bentoml_fixes.UPSTREAM))
def test_the_code_each_fix_replaces_is_unchanged(fix: str, upstream_digests: dict[str, str]
                                                 ) -> None:
    for module, attribute, pinned in bentoml_fixes.UPSTREAM[fix]:
        assert upstream_digests[f"{module}:{attribute}"] == pinned, (
            f"BentoML changed {module}.{attribute}: re-check {fix} in "
            "serving/http/bentoml_fixes.py, then update its pinned digest")


def test_apply_replaces_each_target_once() -> None:
    code = ("from serving.http import bentoml_fixes as f; f.apply(); f.apply(); "
            "print(all(f.upstream_digest(m, a) != d "
            "for targets in f.UPSTREAM.values() for m, a, d in targets))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "True"


def test_client_errors_are_4xx_and_faults_are_not() -> None:
    from bentoml.exceptions import BadInput, InternalServerError, InvalidArgument, NotFound
    from pydantic import BaseModel, ValidationError

    class Model(BaseModel):
        n: int

    try:
        Model(n="x")  # type: ignore[arg-type]
    except ValidationError as err:
        validation = err
    assert bentoml_fixes.client_error_status(validation) == 400
    assert bentoml_fixes.client_error_status(InvalidArgument("bad")) == 400
    assert bentoml_fixes.client_error_status(BadInput("bad")) == 400
    assert bentoml_fixes.client_error_status(NotFound("none")) == 404
    assert bentoml_fixes.client_error_status(InternalServerError("boom")) is None
    assert bentoml_fixes.client_error_status(RuntimeError("boom")) is None
