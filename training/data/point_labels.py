"""Sparse vector labels in training: where the labelled points are, and label overlays.

- :func:`labelled_points`: the features of vector label files that give a class, as
  points (what :class:`~training.data.samplers.LabelledPatchSampler` places patches
  around);
- :func:`overlay_masks`: the collate function of a ``UnionDataset`` of labels in which
  later labels (the map page's points) win over earlier ones (rasters, polygons).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from serving.files import read_vector_file


def labelled_points(sources: Iterable[tuple[Path, str, Mapping[int, int] | None]],
                    crs: Any, nodata: int = 0) -> tuple[list[float], list[float]]:
    """The x and y (in ``crs``) of the features that give a class.

    Args:
        sources: ``(file, class field, label_map or None)`` per vector label file.
        crs: CRS of the coordinates returned.
        nodata: The nodata code: features mapped to it train nothing.

    A polygon counts by a point inside it; features whose class is empty (null, NaN),
    or that the label map sends to nodata, are left out. A file without the field
    counts every feature as class 1 (torchgeo's convention for an unnamed label).
    """
    xs: list[float] = []
    ys: list[float] = []
    for path, field, label_map in dict.fromkeys((p, f, _frozen(m)) for p, f, m in sources):
        table = dict(label_map) if label_map is not None else None
        frame = read_vector_file(path, "labels", ValueError).to_crs(crs)
        values = frame[field] if field in frame.columns else None
        for k, geometry in enumerate(frame.geometry):
            if geometry is None or geometry.is_empty:
                continue
            value = None if values is None else values.iloc[k]
            if values is not None and pd.isna(value):  # null or NaN: unlabelled
                continue
            code = 1 if value is None else int(value)
            code = code if table is None else table.get(code, nodata)
            if code == nodata:
                continue
            point = geometry.representative_point()
            xs.append(point.x)
            ys.append(point.y)
    return xs, ys


def _frozen(label_map: Mapping[int, int] | None) -> tuple[tuple[int, int], ...] | None:
    """A label map as a hashable, with integer codes (YAML or JSON keys)."""
    if not label_map:
        return None
    return tuple(sorted((int(k), int(v)) for k, v in label_map.items()))


def overlay_masks(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Labels of a :class:`~torchgeo.datasets.UnionDataset`: later ones win where set.

    torchgeo's default (``merge_samples``) keeps the largest value of overlapping
    masks: for class codes that would let code 5 beat a labeller's code 2. Here the
    first sample is the base and each later mask replaces it where it is not nodata (0).
    """
    out = dict(samples[0])
    mask = samples[0]["mask"].clone()
    for sample in samples[1:]:
        extra = sample["mask"]
        mask = torch.where(extra != 0, extra.to(mask.dtype), mask)
    out["mask"] = mask
    return out
