"""Small real ONNX models for serving tests, exported from torch like the real one."""

from __future__ import annotations

from pathlib import Path

import torch

from serving.classes import load_classes
from serving.inference.contract import ModelContract
from training.export.exporter import OPSET, package_model
from training.synthetic.spectra import S2_BANDS


class LocalConvNet(torch.nn.Module):
    """Three 3x3 convolutions: a receptive-field radius of 3 pixels, no downsampling."""

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(bands, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, classes, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes, H, W)."""
        return self.net(x)


class SymmetricConvNet(LocalConvNet):
    """:class:`LocalConvNet` with 3x3 kernels symmetric under flips and 90° turns.

    Each kernel is the mean of its eight turned and mirrored copies, so the model is
    equivariant to the symmetries of the square: its logits of a flipped tile are the
    flipped logits of the tile (up to float error), away from padded edges too.
    """

    def __init__(self, bands: int, classes: int) -> None:
        super().__init__(bands, classes)
        with torch.no_grad():
            for conv in self.net:
                if isinstance(conv, torch.nn.Conv2d):
                    w = conv.weight
                    views = [torch.rot90(v, k, (2, 3)) for v in (w, torch.flip(w, (3,)))
                             for k in range(4)]
                    w.copy_(torch.stack(views).mean(0))


def write_local_model(folder: Path, tile_size: int = 64, overlap: int = 16,
                      mean: float = 1500.0, std: float = 1000.0,
                      pixel_size_m: float | None = None,
                      net: torch.nn.Module | None = None,
                      bands: list[str] | None = None) -> Path:
    """A model folder (model.onnx + contract.json) for the default bands and classes.

    ``net``: the network to export (default: :class:`LocalConvNet`), with the default
    bands in and the default classes out. ``bands``: other input bands (radar bands
    get the mean and std of their stored dB, about -14 dB +- 5).
    """
    folder.mkdir(parents=True, exist_ok=True)
    schema = load_classes()
    names = list(bands or S2_BANDS)
    means = [3600.0 if b.endswith("_db") else mean for b in names]
    stds = [500.0 if b.endswith("_db") else std for b in names]
    net = (net or LocalConvNet(len(names), schema.num_classes)).eval()
    torch.onnx.export(
        net, (torch.zeros(1, len(names), tile_size, tile_size),),
        str(folder / "model.onnx"), input_names=["image"], output_names=["logits"],
        opset_version=OPSET, dynamo=False,
        dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                      "logits": {0: "batch", 2: "height", 3: "width"}},
    )
    contract = ModelContract(
        name="local-test", version="v1", classes=schema.to_dict(), bands=names,
        input_dtype="uint16", mean=means, std=stds,
        tile_size=tile_size, overlap=overlap, opset=OPSET, created="2026-01-01T00:00:00",
        pixel_size_m=pixel_size_m,
    )
    package_model(folder, contract)
    return folder
