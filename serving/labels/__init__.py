"""Labels where there are none: points worth labelling (:mod:`serving.labels.suggest`)."""
