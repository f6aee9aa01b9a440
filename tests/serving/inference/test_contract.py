import json
import shutil
from pathlib import Path

import pytest

from serving.inference.contract import ContractError, ModelContract, load_model_dir
from serving.inference.tiles import TileClassifier
from tests.model_factory import write_local_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_local_model(tmp_path_factory.mktemp("m") / "v1")


def test_contract_round_trip_and_embedded_copy(model_dir: Path) -> None:
    onnx_path, contract = load_model_dir(model_dir)
    assert contract.bands[0] == "B02" and contract.num_bands == 10
    assert len(contract.onnx_sha256) == 64
    assert ModelContract.from_json(contract.to_json()).to_dict() == contract.to_dict()
    assert TileClassifier(onnx_path, contract).provider == "CPUExecutionProvider"


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(model_dir, target)
    return target


def test_refuses_a_changed_model_file(model_dir: Path, tmp_path: Path) -> None:
    bad = _copy(model_dir, tmp_path)
    with open(bad / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ContractError, match="sha256"):
        load_model_dir(bad)


def test_refuses_a_sidecar_that_disagrees_with_the_model(model_dir: Path, tmp_path: Path
                                                          ) -> None:
    bad = _copy(model_dir, tmp_path)
    data = json.loads((bad / "contract.json").read_text())
    data["tile_size"] = 128
    (bad / "contract.json").write_text(json.dumps(data))
    with pytest.raises(ContractError, match=r"disagree on \['tile_size'\]"):
        load_model_dir(bad)


def test_refuses_missing_files_and_bad_fields(model_dir: Path, tmp_path: Path) -> None:
    bad = _copy(model_dir, tmp_path)
    (bad / "contract.json").unlink()
    with pytest.raises(ContractError, match=r"no contract\.json"):
        load_model_dir(bad)
    data = json.loads((model_dir / "contract.json").read_text())
    with pytest.raises(ContractError, match="10 bands but 9 means"):
        ModelContract.from_dict(data | {"mean": data["mean"][:9]})
    with pytest.raises(ContractError, match="unknown fields"):
        ModelContract.from_dict(data | {"surprise": 1})
    with pytest.raises(ContractError, match="not valid JSON"):
        ModelContract.from_json("{")
