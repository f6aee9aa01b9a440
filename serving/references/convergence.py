"""Convergence: the model's verdict beside what the reference layers say, plot by plot.

Per plot: how many layers see forest at the cutoff, how many see loss after it (a loss
map's post-cutoff loss, or a high-confidence alert after the cutoff, of at least
``min_loss_ha``), the model's verdict beside them, and where they disagree the plot is
``needs_review`` with the reason in words. The rule (:data:`RULES`, default ``any``):

- ``any``: the model calls the plot free (or could not see it) while **any** layer
  that covers it sees loss after the cutoff, or a period of loss that straddles the
  cutoff; or the model detects loss while **every** layer that covers the plot and can
  see loss sees none.
- ``majority``: the same, but only when most of the covering layers that can see loss
  disagree with the model.
- ``off``: references are reported, verdicts are the model's.

Without a model (:func:`reference_verdict`) the layers give the verdict alone: loss
after the cutoff seen by a layer -> ``deforestation_detected``; only low-confidence
alerts or a straddling period -> ``needs_review``; layers that cover the plot and see
none -> ``deforestation_free``; too little covered -> ``insufficient_data``.
"""

from __future__ import annotations

from typing import Any, Literal

from serving.baseline.change import Thresholds

Rule = Literal["any", "majority", "off"]
RULES: tuple[Rule, ...] = ("any", "majority", "off")
#: A layer covering less of a plot than this takes no part in the convergence.
MIN_COVERED = 0.5


def sees_loss(layer: dict[str, Any], min_loss_ha: float) -> bool | None:
    """Whether a layer sees loss after the cutoff (None: it cannot see loss)."""
    if "loss_after_cutoff_ha" not in layer and "alert_after_cutoff_ha" not in layer:
        return None
    return bool(layer.get("loss_after_cutoff_ha", 0.0) >= min_loss_ha
                or layer.get("alert_high_after_cutoff_ha", 0.0) >= min_loss_ha)


def _says(name: str, layer: dict[str, Any]) -> str:
    """What a layer says of a plot, in words."""
    parts = []
    if layer.get("loss_after_cutoff_ha"):
        parts.append(f"{layer['loss_after_cutoff_ha']:.2f} ha lost after the cutoff"
                     + (f" ({layer['first_loss_period']})"
                        if layer.get("first_loss_period") else ""))
    if layer.get("loss_straddling_ha"):
        parts.append(f"{layer['loss_straddling_ha']:.2f} ha lost in a period that "
                     "straddles the cutoff")
    if layer.get("alert_after_cutoff_ha"):
        parts.append(f"alerts over {layer['alert_after_cutoff_ha']:.2f} ha after the "
                     f"cutoff, first on {layer['first_alert_date']} "
                     f"({layer['first_alert_confidence']} confidence)")
    return f"{name}: " + ("; ".join(parts) or "no loss after the cutoff")


def converge(record: dict[str, Any], layers: dict[str, dict[str, Any]],
             thresholds: Thresholds, rule: Rule = "any") -> dict[str, Any]:
    """The convergence block of a plot's record; may turn its verdict to needs_review.

    ``record`` is the model's record (with ``verdict``); it is changed in place: the
    model's own verdict stays in ``model_verdict``.
    """
    min_loss = thresholds.min_loss_ha
    covering = {n: lay for n, lay in layers.items()
                if lay.get("covered_fraction", 0) >= MIN_COVERED}
    forest_seen = [n for n, lay in covering.items()
                   if (lay.get("forest_cutoff_ha") or 0) >= min_loss]
    forest_able = [n for n, lay in covering.items() if "forest_cutoff_ha" in lay]
    loss_able = {n: sees_loss(lay, min_loss) for n, lay in covering.items()
                 if sees_loss(lay, min_loss) is not None}
    loss_seen = [n for n, seen in loss_able.items() if seen]
    straddling = [n for n, lay in covering.items()
                  if (lay.get("loss_straddling_ha") or 0) >= min_loss]
    model = record.get("verdict")
    block: dict[str, Any] = {
        "rule": rule, "model_verdict": model,
        "sources_forest": len(forest_seen), "sources_forest_able": len(forest_able),
        "sources_loss": len(loss_seen), "sources_loss_able": len(loss_able),
        "agrees": True, "reasons": [],
    }
    record["model_verdict"] = model
    if rule == "off" or model in ("error", None) or (not loss_able and not straddling):
        return block
    reasons: list[str] = []
    if model in ("deforestation_free", "insufficient_data"):
        against = loss_seen + [n for n in straddling if n not in loss_seen]
        enough = bool(against) if rule == "any" else len(against) * 2 > len(loss_able)
        if enough:
            reasons.append(f"the model sees no loss ({model}) but "
                           + "; ".join(_says(n, covering[n]) for n in against))
    elif model == "deforestation_detected":
        quiet = [n for n, seen in loss_able.items() if not seen]
        enough = (len(quiet) == len(loss_able) if rule == "any"
                  else len(quiet) * 2 > len(loss_able))
        if enough and quiet and not straddling:
            reasons.append(f"the model sees {record.get('forest_loss_ha', 0):.2f} ha of "
                           "forest lost but " + "; ".join(_says(n, covering[n])
                                                          for n in quiet))
    if reasons:
        block["agrees"] = False
        block["reasons"] = reasons
        record["verdict"] = "needs_review"
        record.setdefault("flags", []).append("sources_disagree")
    return block


def reference_verdict(layers: dict[str, dict[str, Any]], thresholds: Thresholds
                      ) -> tuple[str, list[str]]:
    """A verdict from the layers alone, and why (no model store)."""
    min_loss = thresholds.min_loss_ha
    able = {n: lay for n, lay in layers.items() if sees_loss(lay, min_loss) is not None}
    seen = {n: lay for n, lay in able.items() if sees_loss(lay, min_loss)}
    if seen:
        return "deforestation_detected", [_says(n, lay) for n, lay in seen.items()]
    doubtful = {n: lay for n, lay in able.items()
                if (lay.get("loss_straddling_ha") or 0) >= min_loss
                or (lay.get("alert_after_cutoff_ha") or 0) >= min_loss}
    if doubtful:
        return "needs_review", [_says(n, lay) for n, lay in doubtful.items()]
    covering = [n for n, lay in able.items()
                if lay.get("covered_fraction", 0) >= thresholds.min_valid_fraction]
    if not covering:
        return "insufficient_data", ["no layer that sees loss covers enough of the plot ("
                                     + ", ".join(f"{n} {lay.get('covered_fraction', 0):.0%}"
                                                 for n, lay in able.items()) + ")"]
    return "deforestation_free", [_says(n, able[n]) for n in covering]
