"""Evidence a reviewer opens before rejecting a farm: one picture per plot.

Four panels around the plot (its outline drawn on each): the reference and current
composites in true colour (B04, B03, B02), and the reference and current class maps
with the class legend; with reference layers, a fifth: what the layers say around the
plot (forest at the cutoff in green, loss or alerts after it in red, a period across
the cutoff in orange). The title gives the plot's verdict, forest at the reference
date, loss and share observed. Read from the same windows as the check; a source
without composites (a pair of class maps) shows the class maps only.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray

from serving.bands import TRUE_COLOUR
from serving.plots.geolocation import Plot
from serving.references.layers import ReferenceLayer, masks_on_grid
from serving.store.grid import from_lonlat
from serving.store.reader import MapSource, ZoneMaps

#: Context around a plot, as a share of its size (and at least this many pixels).
CONTEXT_SHARE = 0.75
MIN_CONTEXT_PX = 24
RGB = TRUE_COLOUR


def _rgb_bands(zone: ZoneMaps) -> list[int] | None:
    for cell in zone.cells:
        path = cell.files.get(("composite", "reference"))
        if path is not None:
            with rasterio.open(path) as src:
                names = list(src.descriptions or ())
            if all(b in names for b in RGB):
                return [names.index(b) + 1 for b in RGB]
    return None


def _stretch(rgb: NDArray[Any]) -> NDArray[np.float64]:
    data = rgb.astype(np.float64)
    seen = (data > 0).all(axis=0)
    out = np.zeros((*data.shape[1:], 3))
    if seen.any():
        lo, hi = np.percentile(data[:, seen], (2, 98))
        out = np.clip((np.moveaxis(data, 0, -1) - lo) / max(hi - lo, 1.0), 0, 1)
    out[~seen] = 1.0  # never seen clearly: white
    return out


#: Colours of the reference panel: nothing said, forest, loss after, straddling.
REFERENCE_COLOURS = ("#ffffff", "#2e7d32", "#d32f2f", "#f57c00")


def _reference_panel(references: list[ReferenceLayer], crs: str, transform: Any,
                     shape: tuple[int, int]) -> NDArray[np.uint8]:
    """0 nothing, 1 forest at the cutoff, 2 loss after it, 3 straddling (any layer)."""
    panel = np.zeros(shape, np.uint8)
    for layer in references:
        masks = masks_on_grid(layer, crs, transform, shape)
        panel[masks["forest"] & (panel == 0)] = 1
        panel[masks["straddles"]] = 3
    for layer in references:  # loss drawn over everything
        panel[masks_on_grid(layer, crs, transform, shape)["loss"]] = 2
    return panel


def evidence_png(plot: Plot, record: dict[str, Any], source: MapSource,
                 references: list[ReferenceLayer] | None = None) -> bytes:
    """The plot's evidence picture as PNG bytes (with a reference-layer panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if plot.geometry is None:
        raise ValueError(f"plot {plot.plot_id} has no geometry to show")
    zones = [z for z in source.zones if z.band is None or z.band.intersects(plot.geometry)]
    zone = zones[0]
    (local,) = from_lonlat([plot.geometry], zone.crs)
    box_ = zone.pixel_window(local.bounds)
    pad = max(MIN_CONTEXT_PX, int(CONTEXT_SHARE * max(box_.width, box_.height)))
    window = zone.pixel_window(local.bounds, margin=pad)
    t = zone.window_transform(window)
    extent = (t.c, t.c + t.a * window.width, t.f + t.e * window.height, t.f)
    schema = source.schema
    panels: list[tuple[str, NDArray[Any], bool]] = []
    bands = _rgb_bands(zone)
    for period in ("reference", "current"):
        if bands is not None:
            rgb, _ = zone.read("composite", period, window, bands)
            panels.append((f"{period} composite", _stretch(rgb), True))
    for period in ("reference", "current"):
        classes, _ = zone.read("classes", period, window)
        panels.append((f"{period} classes", classes, False))
    if references:
        drawn = _reference_panel(references, zone.crs, t, (window.height, window.width))
        panels.append(("reference layers", drawn, False))
    cmap = ListedColormap([c.colour for c in schema.classes])
    ref_cmap = ListedColormap(list(REFERENCE_COLOURS))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.8))
    for ax, (title, data, is_rgb) in zip(np.atleast_1d(axes), panels, strict=True):
        if is_rgb:
            ax.imshow(data, extent=extent, interpolation="nearest")
        elif title == "reference layers":
            ax.imshow(data, cmap=ref_cmap, vmin=0, vmax=3, extent=extent,
                      interpolation="nearest")
        else:
            ax.imshow(data, cmap=cmap, vmin=0, vmax=schema.num_classes - 1,
                      extent=extent, interpolation="nearest")
        for ring in getattr(local, "geoms", [local]):
            xs, ys = ring.exterior.xy
            ax.plot(xs, ys, color="black", linewidth=1.6)
            ax.plot(xs, ys, color="yellow", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    observed = record.get("valid_fraction")
    fig.suptitle(
        f"plot {plot.plot_id}: {record.get('verdict')} - forest at reference "
        f"{record.get('forest_ref_ha', 0):.2f} ha, lost {record.get('forest_loss_ha', 0):.2f}"
        f" ha, observed {observed:.0%}" if observed is not None else
        f"plot {plot.plot_id}: {record.get('verdict')}", fontsize=10)
    handles = [Patch(color=c.colour, label=c.name) for c in schema.classes[1:]]
    if references:
        handles += [Patch(color=REFERENCE_COLOURS[k], label=label) for k, label in (
            (1, "layers: forest 2020-12-31"), (2, "layers: loss/alert after"),
            (3, "layers: across the cutoff"))]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5),
               frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 0.93))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
