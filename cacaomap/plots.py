"""``cacaomap plots check``: farm plots against the region's store, verdicts and evidence.

Nothing is written when the plots file or the store cannot be read; the command ends
with one line naming the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

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
    point_area_ha: float = 4.0,
    min_forest_ha: float | None = None,
    min_confidence: float = 0.5,
    min_loss_ha: float | None = None,
    min_loss_fraction: float | None = None,
    min_valid_fraction: float | None = None,
    classes: Path | None = None,
    workers: int = 2,
    layers: dict[str, Path] | None = None,
    review_rule: Literal["any", "majority", "off"] = "any",
    max_plot_ha: float = 1_000.0,
) -> None:
    r"""Check farm plots (EUDR GeoJSON: points with Area, polygons) against a store.

    Per plot: forest at the cutoff, its loss by driver, the share observed, the
    confidence, a verdict and its flags. Only the windows each plot touches are read.
    With ``--layers``, what each reference map and alert says of the plot (forest at
    the cutoff, loss after it, the first alert), beside the model's verdict: where they
    disagree the plot is ``needs_review`` with the reason. With layers and no store,
    the layers alone give the verdict.

    Args:
        plots: The plots GeoJSON (up to 10,000 features).
        store: A baseline store (``cacaomap store build``).
        reference: Or a class map at the reference date ...
        current: ... and one at the current date (confidence COGs beside are read).
        out: Report folder.
        evidence: Also write ``evidence/<plot>.png`` for each plot.
        point_area_ha: Area checked around a point without ``Area`` (the EU's 4 ha).
        min_forest_ha: Smallest forest patch (default: the store's, else 0.5 ha).
        min_confidence: Detections with a lower mean loss confidence -> needs_review.
        min_loss_ha: Loss under this is map noise (default: the store's, else 0.1).
        min_loss_fraction: ... and under this share (default: the store's, else 0.01).
        min_valid_fraction: Less observed -> insufficient_data (default: store's, 0.8).
        classes: Class schema of the maps (pair of maps only; default the packaged one).
        workers: Chunks of plots measured at once.
        layers: Reference layers, ``SPEC=PATH``: a shipped spec (``jrc_gfc2020``,
            ``hansen_gfc``, ``jrc_tmf``, ``radd``, ``glad_s2``, ``glad_l``,
            ``dist_alert``, ``prodes``, ``mapbiomas``) or a spec YAML file, and a raster
            or a folder of tiles (docs/references.md).
        review_rule: When model and layers disagree enough for ``needs_review``:
            ``any`` layer, the ``majority``, or ``off``.
        max_plot_ha: The largest plot checked: a larger one (an area in m² given as
            hectares?) is that plot's error, before any work on it.

    Writes:
        OUT/plots.geojson (the input with a ``cacaomap`` record in each feature's
        properties), OUT/plots.csv (the record's fields, then the producer's properties
        prefixed ``producer.``), OUT/plots.json (summary and lineage: store, model
        sha256, thresholds) and, with ``--evidence``, OUT/evidence/<n>-<plot>.png (n:
        the feature's position, so two plots with one id keep their own picture).

    Examples:
        cacaomap plots check plots_eudr.geojson --store store/ --out report/
        cacaomap plots check plots.geojson --store store/ --evidence
        cacaomap plots check plots.geojson --reference maps/2020.tif \
            --current maps/2024.tif --min-confidence 0.6
        cacaomap plots check plots.geojson --store store/ \
            --layers jrc_gfc2020=gfc2020/ hansen_gfc=hansen/ radd=radd.tif
        cacaomap plots check plots.geojson --layers jrc_gfc2020=gfc2020/ radd=radd/
    """
    from serving.baseline.change import Thresholds
    from serving.classes import load_classes
    from serving.files import write_bytes_atomic
    from serving.plots.check import CheckOptions, run_checks
    from serving.plots.evidence import evidence_png
    from serving.plots.geolocation import PlotsError
    from serving.plots.report_files import write_outputs
    from serving.references.layers import ReferenceLayer
    from serving.store.reader import open_store, pair_of_maps

    maps = reference is not None or current is not None
    if (store is not None and maps) or (maps and (reference is None or current is None)):
        raise CommandError("give --store, or both --reference and --current")
    if store is None and not maps and not layers:
        raise CommandError("give --store, both --reference and --current, or --layers")
    references = [ReferenceLayer.open(spec, path) for spec, path in (layers or {}).items()]
    if not plots.is_file():
        raise PlotsError(f"no plots file at {plots}")
    source = (open_store(store) if store is not None else
              pair_of_maps(reference, current, load_classes(classes))  # type: ignore[arg-type]
              if maps else None)
    meta = source.meta if source is not None else {}
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
            point_area_ha=point_area_ha, references=references, review_rule=review_rule,
            max_plot_ha=max_plot_ha,
            on_progress=lambda d, t: bar.update(task, completed=d, total=t))
        written = write_outputs(out, checked, records, summary)
        if evidence and source is not None:
            for plot, record in zip(checked, records, strict=True):
                if plot.geometry is not None and record["verdict"] != "error":
                    path = out / "evidence" / evidence_name(plot.index, plot.plot_id)
                    write_bytes_atomic(path, evidence_png(plot, record, source, references))
                    record["evidence"] = str(path)
            written = write_outputs(out, checked, records, summary)
    _print_verdicts(records, summary)
    if references:
        _print_agreement(records, thresholds, source is not None)
    Console().print("wrote " + ", ".join(str(p) for p in written)
                    + (f", {out / 'evidence'}/" if evidence and source is not None else ""))


def evidence_name(index: int, plot_id: str) -> str:
    """The evidence file of a feature: unique per feature, whatever the plot ids."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in plot_id)[:80]
    return f"{index + 1:05d}-{safe}.png"


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


def _print_agreement(records: list[dict[str, object]], thresholds: object,
                     with_model: bool) -> None:
    from serving.plots.reference_checks import agreement_table

    table = Table(title="Reference layers beside the model: plots judged, agreement")
    for col in ("layer", "loss: plots", "loss: agree", "forest: plots", "forest: agree"):
        table.add_column(col)
    for row in agreement_table(records, thresholds):  # type: ignore[arg-type]
        loss, forest = row["loss_agreement_model"], row["forest_agreement_model"]
        table.add_row(row["source"], str(row["loss_plots"]),
                      f"{loss:.0%}" if loss is not None and with_model else "-",
                      str(row["forest_plots"]),
                      f"{forest:.0%}" if forest is not None and with_model else "-")
    Console().print(table)
    review = [r for r in records if r.get("verdict") == "needs_review"
              and (r.get("convergence") or {}).get("reasons")]  # type: ignore[attr-defined]
    for r in review[:10]:
        Console().print(f"needs_review {r['plot_id']}: "
                        + "; ".join(r["convergence"]["reasons"]))  # type: ignore[index]
