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
                    truth: dict[str, dict[str, Any]] | None = None
                    ) -> list[dict[str, Any]]:
    """Per layer: plots it judges, and how often it agrees with the model (and truth).

    On loss: a layer judges a plot it covers (at least half) and can see loss in; it
    agrees with a verdict when it sees loss after the cutoff exactly where the verdict
    is ``deforestation_detected``. On forest: a layer with forest at the cutoff agrees
    when it sees forest (at least ``min_loss_ha``) exactly where the model (the truth)
    has forest at the reference date. ``truth``: plot id -> the true record (the
    demo's, from the generator's maps).
    """
    least = thresholds.min_loss_ha
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        model = record.get("convergence", {}).get("model_verdict", record.get("verdict"))
        true = (truth or {}).get(str(record.get("plot_id"))) or {}
        for name, layer in (record.get("references") or {}).items():
            row = rows.setdefault(name, dict.fromkeys(
                ("loss_plots", "loss_agree_model", "loss_truth", "loss_agree_truth",
                 "forest_plots", "forest_agree_model", "forest_truth",
                 "forest_agree_truth"), 0) | {"source": name})
            if layer.get("covered_fraction", 0) < MIN_COVERED:
                continue
            seen = sees_loss(layer, least)
            if seen is not None:
                if model in ("deforestation_detected", "deforestation_free"):
                    row["loss_plots"] += 1
                    row["loss_agree_model"] += seen == (model == "deforestation_detected")
                if true.get("verdict") in ("deforestation_detected", "deforestation_free"):
                    row["loss_truth"] += 1
                    row["loss_agree_truth"] += seen == (
                        true["verdict"] == "deforestation_detected")
            if "forest_cutoff_ha" in layer:
                forest = (layer["forest_cutoff_ha"] or 0) >= least
                if record.get("forest_ref_ha") is not None:
                    row["forest_plots"] += 1
                    row["forest_agree_model"] += forest == (record["forest_ref_ha"] >= least)
                if true.get("forest_ref_ha") is not None:
                    row["forest_truth"] += 1
                    row["forest_agree_truth"] += forest == (true["forest_ref_ha"] >= least)
    for row in rows.values():
        for what in ("loss", "forest"):
            for against, total in (("model", f"{what}_plots"), ("truth", f"{what}_truth")):
                agree = row[f"{what}_agree_{against}"]
                row[f"{what}_agreement_{against}"] = (agree / row[total] if row[total]
                                                      else None)
    return list(rows.values())
