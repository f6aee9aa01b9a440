"""Plot check results as people and systems take them: GeoJSON, CSV, JSON.

- ``plots.geojson``: the input features as they came (geometry and the producer's
  properties untouched), each with one more property, ``cacaomap``, holding its record
  (verdict, forest at the reference date, loss by driver, flags ...). A point stays a
  point; its record says it was checked over a circle (``geometry_used``).
- ``plots.csv``: one row per plot: the record's fields, then the producer's properties,
  each prefixed ``producer.`` (so a producer's ``verdict`` never stands in for ours);
  a text cell a spreadsheet would run as a formula (``= + - @``, tab, CR first) is
  written with a leading ``'``.
- ``plots.json``: the records, the verdict counts and the lineage (store or maps,
  model, periods, cutoff, thresholds, the input's sha256).

Every file is written to a temporary name and renamed (:mod:`serving.files`).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from serving.files import write_bytes_atomic
from serving.plots.geolocation import Plot, json_ready

#: The property each output feature gets (producer properties are never changed).
RECORD_PROPERTY = "cacaomap"

#: What each verdict means, for people (README, map page, reports).
VERDICTS = {
    "deforestation_free": "no forest loss detected since the reference date, and the "
                          "plot was observed over enough of its area",
    "deforestation_detected": "forest at the reference date was lost (over the loss "
                              "thresholds) to cocoa, oil palm, degraded or other land",
    "needs_review": "a person should look at the evidence: loss was detected with low "
                    "confidence, the plot is too small for any loss to be detected, "
                    "or the sources disagree (the reason is given)",
    "insufficient_data": "no loss detected, but too little of the plot was observed "
                         "clearly at both dates to call it free",
    "error": "the plot could not be checked (the reason is given)",
}
#: What each flag means.
FLAGS = {
    "area_missing": "a point without Area: checked over 4 ha, as the EU's information "
                    "system assumes",
    "area_mismatch": "the declared Area differs from the polygon's own area by more "
                     "than 25 %",
    "implausible_area": "an area larger than any farm plot (over 5,000 ha): hectares "
                        "given in another unit?",
    "below_detection_area": "the checked area is under the smallest loss that is "
                            "detected (min_loss_ha): the plot cannot be called free",
    "polygon_required": "a point declaring more than 4 ha: the regulation asks for a "
                        "polygon",
    "low_precision": "coordinates with fewer than 6 decimals",
    "partly_outside_store": "part of the plot lies outside the store's cells",
    "cell_not_built": "a store cell under the plot failed to build",
    "low_confidence": "the mean confidence over the loss pixels is under the threshold",
}


def feature_collection(plots: list[Plot], records: list[dict[str, Any]]
                       ) -> dict[str, Any]:
    """The input features, each with its record under :data:`RECORD_PROPERTY`."""
    features = []
    for plot, record in zip(plots, records, strict=True):
        feature = dict(json_ready(plot.feature)) if plot.feature else {
            "type": "Feature", "geometry": None, "properties": {}}
        props = dict(feature.get("properties") or {})
        props[RECORD_PROPERTY] = record
        feature["properties"] = props
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


#: Prefix of the producer's properties in the CSV header.
PRODUCER_PREFIX = "producer."
#: First characters that make a spreadsheet run a cell (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(plots: list[Plot], records: list[dict[str, Any]]) -> str:
    """One row per plot: the record's fields, then the producer's properties, prefixed."""
    producer: list[str] = []
    for plot in plots:
        for key in (plot.feature.get("properties") or {}) if plot.feature else ():
            if str(key) not in producer:
                producer.append(str(key))
    fields: list[str] = []
    for record in records:
        fields += [k for k in record if k not in fields]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([_cell(f) for f in fields]
                    + [_cell(PRODUCER_PREFIX + k) for k in producer])
    for plot, record in zip(plots, records, strict=True):
        props = json_ready((plot.feature.get("properties") or {}) if plot.feature else {})
        writer.writerow([_cell(record.get(f)) for f in fields]
                        + [_cell(props.get(k)) for k in producer])
    return buf.getvalue()


def _cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet shows and never runs."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)  # numbers stay numbers (a negative one is not a formula)
    if isinstance(value, list):
        text = ";".join(map(str, value))
    elif isinstance(value, dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_outputs(out: str | Path, plots: list[Plot], records: list[dict[str, Any]],
                  summary: dict[str, Any]) -> list[Path]:
    """Write plots.geojson, plots.csv and plots.json into ``out``."""
    out = Path(out)
    written = [
        write_bytes_atomic(out / "plots.geojson",
                           json.dumps(feature_collection(plots, records)).encode()),
        write_bytes_atomic(out / "plots.csv", csv_text(plots, records).encode()),
        write_bytes_atomic(out / "plots.json",
                           json.dumps(summary | {"plots": records}, indent=1).encode()),
    ]
    return written
