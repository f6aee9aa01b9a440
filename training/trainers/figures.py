"""Pictures of results: confusion matrices and prediction overlays with a legend."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from serving.classes import ClassSchema


def class_colormap(schema: ClassSchema) -> ListedColormap:
    """A matplotlib colormap indexed by class code."""
    return ListedColormap([c.colour for c in schema.classes])


def rgb_composite(
    image: NDArray[np.floating], limits: tuple[float, float] | None = None
) -> NDArray[np.float32]:
    """Stretch a (3, H, W) array to an (H, W, 3) display image in [0, 1].

    One stretch for all three bands keeps the colour balance (a forest stays green);
    ``limits`` (low, high) lets several patches share it, else the 2-98 percentiles.
    """
    lo, hi = limits if limits is not None else stretch_limits([image])
    out = np.clip((np.moveaxis(image, 0, -1) - lo) / max(hi - lo, 1e-6), 0, 1)
    return out.astype(np.float32)


def stretch_limits(images: list[NDArray[np.floating]]) -> tuple[float, float]:
    """Joint 2nd and 98th percentiles of the finite values of several images."""
    values = np.concatenate([np.ravel(i) for i in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, (2, 98))
    return float(lo), float(hi)


def confusion_matrix_figure(
    matrix: NDArray[np.integer], schema: ClassSchema, title: str = "Confusion matrix"
) -> Figure:
    """Row-normalised confusion matrix (truth rows, prediction columns), nodata left out.

    Cells show the recall share and the pixel count.
    """
    codes = schema.valid_codes
    m = np.asarray(matrix)[np.ix_(codes, codes)].astype(np.float64)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    names = [schema.classes[c].name for c in codes]
    fig, ax = plt.subplots(figsize=(1.3 * len(codes) + 2.5, 1.1 * len(codes) + 2))
    ax.imshow(share, cmap="Greens", vmin=0, vmax=1)
    for i in range(len(codes)):
        for j in range(len(codes)):
            ax.text(j, i, f"{share[i, j]:.2f}\n{int(m[i, j])}", ha="center",
                    va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(codes)), names, rotation=35, ha="right")
    ax.set_yticks(range(len(codes)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def overlay_figure(
    rgb: list[NDArray[np.floating]],
    truth: list[NDArray[np.integer]],
    prediction: list[NDArray[np.integer]],
    schema: ClassSchema,
    title: str = "",
) -> Figure:
    """Rows of RGB composite | reference | prediction, with the class legend."""
    n = len(rgb)
    cmap = class_colormap(schema)
    vmax = schema.num_classes - 1
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n + 0.8), squeeze=False)
    limits = stretch_limits(rgb)
    for i in range(n):
        axes[i, 0].imshow(rgb_composite(rgb[i], limits))
        axes[i, 1].imshow(truth[i], cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
        axes[i, 2].imshow(prediction[i], cmap=cmap, vmin=0, vmax=vmax,
                          interpolation="nearest")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, label in zip(axes[0], ("RGB composite", "reference", "prediction"),
                         strict=True):
        ax.set_title(label)
    handles = [Patch(color=c.colour, label=f"{c.code} {c.name}") for c in schema.classes]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3),
               fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig
