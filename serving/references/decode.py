"""What a layer's values mean, pixel by pixel: forest at the cutoff, loss, alerts.

The decoders of the three things a spec may say (:mod:`serving.references.spec`),
applied to the values of a layer's roles (arrays of any shape: a window, or only the
pixels plots touch):

- :func:`forest_at_cutoff`: class ``values`` or a ``min_value`` (tree cover), less what
  a loss role of the same spec says was lost by the cutoff;
- :func:`loss_sides`: per pixel, loss before, straddling or after the cutoff, and the
  first day of its period;
- :func:`alert_dates`: per pixel, an alert's date and confidence (RADD's date_conf in
  one number, or a date and a status in two rasters).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from numpy.typing import NDArray

from serving.references.spec import LayerSpec, Period


def spec_period_starting(spec: LayerSpec, start: dt.date) -> Period:
    """The loss period of ``spec`` that starts on ``start`` (for the record)."""
    for period in spec.loss_periods().values():
        if period.start == start:
            return period
    return spec.year_period(start.year if (start.month, start.day) == (1, 1)
                            else start.year + 1)


def forest_at_cutoff(spec: LayerSpec, data: dict[str, NDArray[Any]], cutoff: dt.date
            ) -> NDArray[np.bool_]:
    """Per pixel: forest at the cutoff (less what was lost by it, for a tree cover)."""
    rule = spec.forest or {}
    values = data[rule["role"]]
    forest = (np.isin(values, rule["values"]) if "values" in rule
              else values >= float(rule["min_value"]))
    if spec.loss and "min_value" in rule:
        # tree cover of an earlier year, less what was lost by the cutoff (Hansen)
        side, _ = loss_sides(spec, data, cutoff)
        forest &= side != 1
    return np.asarray(forest, bool)


def loss_sides(spec: LayerSpec, data: dict[str, NDArray[Any]], cutoff: dt.date
          ) -> tuple[NDArray[np.int8], NDArray[np.int64]]:
    """Per pixel: 0 no loss, 1 before, 2 straddling, 3 after the cutoff; and its start."""
    rule = spec.loss or {}
    values = np.asarray(data[rule["role"]]).astype(np.int64)
    side = np.zeros(values.shape, np.int8)
    start = np.zeros(values.shape, np.int64)
    if "year_offset" in rule:
        table = {int(v): spec.year_period(int(rule["year_offset"]) + int(v))
                 for v in np.unique(values) if v > 0}
    else:
        table = spec.loss_periods()
    codes = {"before": 1, "straddles": 2, "after": 3}
    for value, period in table.items():
        here = values == value
        if here.any():
            side[here] = codes[period.side(cutoff)]
            start[here] = period.start.toordinal()
    return side, start


def alert_dates(spec: LayerSpec, data: dict[str, NDArray[Any]]
            ) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """Per pixel: the alert's date (ordinal, 0 none) and confidence (1 low, 2 high)."""
    rule = spec.alert or {}
    date_rule, conf_rule = rule["date"], rule.get("confidence") or {}
    raw_date = np.asarray(data[date_rule["role"]]).astype(np.int64)
    days = raw_date % int(date_rule["modulo"]) if "modulo" in date_rule else raw_date
    epoch = dt.date.fromisoformat(str(date_rule["epoch"])).toordinal()
    raw_conf = np.asarray(data[conf_rule.get("role", date_rule["role"])]).astype(np.int64)
    if "divide" in conf_rule:
        raw_conf = raw_conf // int(conf_rule["divide"])
    conf = np.zeros(raw_conf.shape, np.int8)
    for code, label in (conf_rule.get("values") or {}).items():
        conf[raw_conf == int(code)] = 2 if str(label) == "high" else 1
    if not conf_rule:
        conf[:] = 2  # an alert without a confidence is taken as it is
    has = (days > 0) & (conf > 0)
    return np.where(has, epoch + days, 0), np.where(has, conf, 0).astype(np.int8)
