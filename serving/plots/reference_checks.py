"""Plot records with the reference layers beside the model (or instead of it).

:func:`add_references` measures every layer over every plot
(:func:`serving.references.layers.measure_layer`), puts each layer's figures in the
plot's record under ``references``, and either weighs them against the model's verdict
(``convergence``, :func:`serving.references.convergence.converge`) or, with no model
store, gives the verdict from the layers alone
(:func:`serving.references.convergence.reference_verdict`).
:func:`agreement_table` is the landscape's view: per layer, how often it agrees with
the model.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from serving.baseline.change import Thresholds
from serving.plots.geolocation import Plot
from serving.references.convergence import (
    MIN_COVERED,
    Rule,
    converge,
    reference_verdict,
    sees_loss,
)
from serving.references.layers import ReferenceLayer, measure_layer
from serving.references.spec import CUTOFF


def base_record(plot: Plot, thresholds: Thresholds) -> dict[str, Any]:
    """The part of a record that needs no map: the plot, its area, its flags."""
    record: dict[str, Any] = {
        "plot_id": plot.plot_id, "index": plot.index, "geometry_used": plot.geometry_used,
        "declared_area_ha": plot.declared_ha, "area_ha": round(plot.area_ha, 6),
        "flags": list(plot.flags),
    }
    if plot.error is not None:
        record |= {"verdict": "error", "error": plot.error}
    elif plot.area_ha < thresholds.min_loss_ha:
        record["flags"].append("below_detection_area")
    return record


def add_references(plots: list[Plot], records: list[dict[str, Any]],
                   layers: list[ReferenceLayer], thresholds: Thresholds, *,
                   with_model: bool, rule: Rule = "any",
                   cutoff: dt.date = CUTOFF) -> None:
    """Put each layer's figures (and the convergence, or the verdict) in the records."""
    geometries = [p.geometry if p.error is None else None for p in plots]
    areas = [p.area_ha for p in plots]
    measured = {layer.name: measure_layer(layer, geometries, areas, cutoff)
                for layer in layers}
    for i, record in enumerate(records):
        if record.get("verdict") == "error" and "error" in record and plots[i].error:
            continue
        figures: dict[str, dict[str, Any]] = {
            name: figure for name, per_plot in measured.items()
            if (figure := per_plot[i]) is not None}
        record["references"] = figures
        if with_model:
            if record.get("verdict") != "error":
                record["convergence"] = converge(record, figures, thresholds, rule)
            continue
        verdict, reasons = reference_verdict(figures, thresholds)
        if verdict == "deforestation_free" and "below_detection_area" in record["flags"]:
            verdict = "needs_review"
        record["verdict"] = verdict
        record["reasons"] = reasons
        for figure in figures.values():
            for flag in figure.get("flags", []):
                if flag not in record["flags"]:
                    record["flags"].append(flag)


def agreement_table(records: list[dict[str, Any]], thresholds: Thresholds,
                    truth: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per layer: plots it judges, and how often it agrees with the model (and truth).

    A layer judges a plot it covers (at least half) and can see loss in; it agrees with
    a verdict when it sees loss after the cutoff exactly where the verdict is
    ``deforestation_detected``. ``truth``: plot id -> the true verdict (the demo's).
    """
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        model = record.get("convergence", {}).get("model_verdict", record.get("verdict"))
        for name, layer in (record.get("references") or {}).items():
            row = rows.setdefault(name, {"source": name, "plots": 0, "agree_model": 0,
                                         "judged_truth": 0, "agree_truth": 0})
            seen = sees_loss(layer, thresholds.min_loss_ha)
            if seen is None or layer.get("covered_fraction", 0) < MIN_COVERED:
                continue
            if model in ("deforestation_detected", "deforestation_free"):
                row["plots"] += 1
                row["agree_model"] += seen == (model == "deforestation_detected")
            expected = (truth or {}).get(str(record.get("plot_id")))
            if expected in ("deforestation_detected", "deforestation_free"):
                row["judged_truth"] += 1
                row["agree_truth"] += seen == (expected == "deforestation_detected")
    for row in rows.values():
        row["agreement_model"] = row["agree_model"] / row["plots"] if row["plots"] else None
        row["agreement_truth"] = (row["agree_truth"] / row["judged_truth"]
                                  if row["judged_truth"] else None)
    return list(rows.values())
