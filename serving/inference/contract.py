"""The model contract: one JSON document embedded in the ONNX metadata and beside it.

Serving refuses a model whose contract is missing or inconsistent (wrong sha256, ONNX
metadata that disagrees with the sidecar, input channels or output classes that do not
match the bands and classes), and refuses input that does not match it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from serving.bands import REFLECTANCE_SCALE
from serving.classes import ClassSchema, ClassSchemaError
from serving.files import sha256_file

#: Key of the contract in the ONNX model's ``metadata_props``.
METADATA_KEY = "cacaomap_contract"
#: File names inside a model folder ``models/<name>/<version>/``.
ONNX_FILE = "model.onnx"
CONTRACT_FILE = "contract.json"
CARD_FILE = "MODEL_CARD.md"
CONTRACT_VERSION = 1


class ContractError(ValueError):
    """A model contract that is missing, malformed or inconsistent with its model."""


@dataclass
class ModelContract:
    """What a model expects and what it is.

    Attributes:
        name: Model name (registry name).
        version: Model version (folder name under ``models/<name>/``).
        classes: The class schema (dict form of :class:`ClassSchema`).
        bands: Input band names, in channel order.
        input_dtype: dtype of the raw imagery callers send (e.g. ``uint16``).
        reflectance_scale: Digital numbers per unit reflectance.
        reflectance_offset: Offset added after scaling (L2A since baseline 04.00: 0
            once harmonised).
        mean: Per-band normalisation mean, in raw digital numbers.
        std: Per-band normalisation std, in raw digital numbers.
        image_nodata: Raw value marking no observation (None: only NaN).
        pixel_size_m: Ground pixel side of the training imagery in metres (None: not
            recorded; scenes are then not checked against it).
        tile_size: Tile side the model was exported and served at.
        size_multiple: Inputs are zero-padded (the band mean) to a multiple of this
            before the model sees them, and cropped back (U-Net encoders downsample 32x).
        overlap: Default overlap between scene windows, in pixels.
        opset: ONNX opset.
        input_name: ONNX input name.
        output_name: ONNX output name (logits, N x classes x H x W).
        mlflow_run_id: Training run.
        git_sha: Code version that trained it.
        dataset_fingerprint: sha256 of the training files.
        test_metrics: Held-out metrics of the checkpoint.
        parity: ONNX Runtime vs PyTorch agreement measured at export.
        created: ISO 8601 creation time.
        onnx_sha256: sha256 of ``model.onnx`` (sidecar only; the embedded copy
            cannot hold the hash of the file that contains it).
        variant: ``fp32``, or ``int8`` for a statically quantised copy of an fp32 model.
        quantization: For ``int8``: method, calibration, and the accuracy measured
            against the fp32 model (macro-IoU on the test block, argmax agreement).
        contract_version: Version of this document's layout.
    """

    name: str
    version: str
    classes: dict[str, Any]
    bands: list[str]
    input_dtype: str
    mean: list[float]
    std: list[float]
    tile_size: int
    overlap: int
    opset: int
    reflectance_scale: float = REFLECTANCE_SCALE
    reflectance_offset: float = 0.0
    image_nodata: float | None = 0
    pixel_size_m: float | None = None
    size_multiple: int = 32
    input_name: str = "image"
    output_name: str = "logits"
    mlflow_run_id: str | None = None
    git_sha: str | None = None
    dataset_fingerprint: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    created: str = ""
    onnx_sha256: str = ""
    variant: str = "fp32"
    quantization: dict[str, Any] = field(default_factory=dict)
    contract_version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        try:
            self.schema = ClassSchema.from_dict(self.classes)
        except ClassSchemaError as err:
            raise ContractError(f"contract classes: {err}") from err
        n = len(self.bands)
        if n == 0:
            raise ContractError("contract has no bands")
        if len(self.mean) != n or len(self.std) != n:
            raise ContractError(
                f"contract has {n} bands but {len(self.mean)} means and {len(self.std)} stds"
            )
        if any(s <= 0 for s in self.std):
            raise ContractError("contract std values must be positive")
        if self.size_multiple <= 0:
            raise ContractError(f"contract size_multiple must be positive, got "
                                f"{self.size_multiple}")
        if self.tile_size <= 0 or not 0 <= self.overlap < self.tile_size:
            raise ContractError(
                f"contract tile_size={self.tile_size}, overlap={self.overlap}: need "
                "0 <= overlap < tile_size"
            )

    @property
    def num_bands(self) -> int:
        """Input channels."""
        return len(self.bands)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        out = asdict(self)
        out.pop("schema", None)
        return out

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelContract:
        """Parse and validate the JSON form.

        Raises:
            ContractError: On a missing field, an unknown field or a bad value.
        """
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ContractError(f"contract has unknown fields {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ContractError(f"contract is incomplete: {err}") from err

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        """Parse contract JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ContractError(f"contract is not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ContractError("contract JSON must be an object")
        return cls.from_dict(data)


def embedded_contract(onnx_path: str | Path) -> ModelContract:
    """Read the contract embedded in an ONNX file's metadata (via ONNX Runtime).

    Raises:
        ContractError: If the model has no contract or it does not parse.
    """
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types
        raise ContractError(f"{onnx_path} is not a loadable ONNX model: {err}") from err
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise ContractError(f"{onnx_path} has no '{METADATA_KEY}' metadata")
    return ModelContract.from_json(meta[METADATA_KEY])


def load_model_dir(model_dir: str | Path) -> tuple[Path, ModelContract]:
    """Load and cross-check a model folder (``model.onnx`` + ``contract.json``).

    Checks: both files exist; the ONNX file's sha256 equals the contract's; the
    embedded contract equals the sidecar (but for the hash).

    Returns:
        The ONNX path and the contract.

    Raises:
        ContractError: Naming the first inconsistency found.
    """
    folder = Path(model_dir)
    onnx_path, contract_path = folder / ONNX_FILE, folder / CONTRACT_FILE
    for p in (onnx_path, contract_path):
        if not p.is_file():
            raise ContractError(f"model folder {folder} has no {p.name}")
    contract = ModelContract.from_json(contract_path.read_text(encoding="utf-8"))
    actual = sha256_file(onnx_path)
    if contract.onnx_sha256 != actual:
        raise ContractError(
            f"{onnx_path} sha256 {actual[:12]}… does not match the contract's "
            f"{contract.onnx_sha256[:12] or '(none)'}…: the model was changed or corrupted"
        )
    embedded = embedded_contract(onnx_path)
    sidecar = contract.to_dict() | {"onnx_sha256": ""}
    if embedded.to_dict() != sidecar:
        diff = sorted(k for k, v in embedded.to_dict().items() if sidecar.get(k) != v)
        raise ContractError(f"contract.json and the ONNX metadata disagree on {diff}")
    return onnx_path, contract
