"""``cacaomap plots check``: farm plots against the region's store, verdicts and evidence.

Nothing is written when the plots file or the store cannot be read; the command ends
with one line naming the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from cacaomap.grammar import CommandError


def check(
    plots: Path,
    *,
    store: Path | None = None,
    reference: Path | None = None,
    current: Path | None = None,
    out: Path = Path("plots-report"),
    evidence: bool = False,
    point_area_ha: float = 1.0,
    min_forest_ha: float | None = None,
    min_confidence: float = 0.5,
    min_loss_ha: float | None = None,
    min_loss_fraction: float | None = None,
    min_valid_fraction: float | None = None,
    classes: Path | None = None,
    workers: int = 2,
) -> None:
    r"""Check farm plots (EUDR GeoJSON: points with Area, polygons) against a store.

    Per plot: forest at the cutoff, its loss by driver, the share observed, the
    confidence, a verdict and its flags. Only the windows each plot touches are read.

    Args:
        plots: The plots GeoJSON (up to 10,000 features).
        store: A baseline store (``cacaomap store build``).
        reference: Or a class map at the reference date ...
        current: ... and one at the current date (confidence COGs beside are read).
        out: Report folder.
        evidence: Also write ``evidence/<plot>.png`` for each plot.
        point_area_ha: Area checked around a point without ``Area``.
        min_forest_ha: Smallest forest patch (default: the store's, else 0.5 ha).
        min_confidence: Detections with a lower mean loss confidence -> needs_review.
        min_loss_ha: Loss under this is map noise (default: the store's, else 0.1).
        min_loss_fraction: ... and under this share (default: the store's, else 0.01).
        min_valid_fraction: Less observed -> insufficient_data (default: store's, 0.8).
        classes: Class schema of the maps (pair of maps only; default the packaged one).
        workers: Chunks of plots measured at once.

    Writes:
        OUT/plots.geojson (the input with a ``cacaomap`` record in each feature's
        properties), OUT/plots.csv, OUT/plots.json (summary and lineage: store, model
        sha256, thresholds) and, with ``--evidence``, OUT/evidence/<plot>.png.

    Examples:
        cacaomap plots check plots_eudr.geojson --store store/ --out report/
        cacaomap plots check plots.geojson --store store/ --evidence
        cacaomap plots check plots.geojson --reference maps/2020.tif \
            --current maps/2024.tif --min-confidence 0.6
    """
    from serving.baseline.change import Thresholds
    from serving.classes import load_classes
    from serving.files import write_bytes_atomic
    from serving.plots.check import CheckOptions, run_checks
    from serving.plots.evidence import evidence_png
    from serving.plots.geolocation import PlotsError
    from serving.plots.report_files import write_outputs
    from serving.store.reader import open_store, pair_of_maps

    if (store is None) == (reference is None or current is None):
        raise CommandError("give --store, or both --reference and --current")
    if not plots.is_file():
        raise PlotsError(f"no plots file at {plots}")
    source = (open_store(store) if store is not None else
              pair_of_maps(reference, current, load_classes(classes)))  # type: ignore[arg-type]
    meta = source.meta
    kept = meta.get("thresholds") or {}
    thresholds = Thresholds(
        min_loss_ha if min_loss_ha is not None else kept.get("min_loss_ha", 0.1),
        min_loss_fraction if min_loss_fraction is not None else kept.get(
            "min_loss_fraction", 0.01),
        min_valid_fraction if min_valid_fraction is not None else kept.get(
            "min_valid_fraction", 0.8))
    options = CheckOptions(thresholds, min_forest_ha if min_forest_ha is not None else
                           float(meta.get("min_forest_ha", 0.5)), min_confidence,
                           workers=workers)
    with Progress(transient=True) as bar:
        task = bar.add_task("checking plots", total=None)
        checked, records, summary = run_checks(
            plots.read_bytes(), source, options, name=plots.name,
            point_area_ha=point_area_ha,
            on_progress=lambda d, t: bar.update(task, completed=d, total=t))
        written = write_outputs(out, checked, records, summary)
        if evidence:
            for plot, record in zip(checked, records, strict=True):
                if plot.geometry is not None and record["verdict"] != "error":
                    path = out / "evidence" / f"{_safe_name(plot.plot_id)}.png"
                    write_bytes_atomic(path, evidence_png(plot, record, source))
                    record["evidence"] = str(path)
            written = write_outputs(out, checked, records, summary)
    _print_verdicts(records, summary)
    Console().print("wrote " + ", ".join(str(p) for p in written)
                    + (f", {out / 'evidence'}/" if evidence else ""))


def _safe_name(plot_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in plot_id)[:80]


def _print_verdicts(records: list[dict[str, object]], summary: dict[str, object]) -> None:
    console = Console()
    table = Table(title="Plots (first 20)")
    for col in ("plot", "verdict", "forest ha", "lost ha", "observed", "flags"):
        table.add_column(col)
    for r in records[:20]:
        table.add_row(str(r["plot_id"]), str(r["verdict"]),
                      f"{r.get('forest_ref_ha', 0) or 0:.2f}",
                      f"{r.get('forest_loss_ha', 0) or 0:.2f}",
                      f"{r['valid_fraction']:.0%}" if "valid_fraction" in r else "",
                      ", ".join(r.get("flags") or []) or str(r.get("error") or ""))  # type: ignore[arg-type]
    console.print(table)
    console.print(f"verdicts: {json.dumps(summary['verdicts'])}")
