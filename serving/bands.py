"""The default imagery contract: Sentinel-2 L2A bands, their order and their scale.

A model carries its own bands and scale in its contract
(:class:`serving.inference.contract.Contract`); these are the defaults every part of the
project starts from (the composite command, the synthetic landscape, the datasets):
ten 10/20 m bands as harmonised digital numbers, reflectance x 10000, at 10 m.
"""

from __future__ import annotations

#: Band names of the default imagery, in file and model order.
DEFAULT_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)

#: The true-colour bands, red, green, blue: a scene's or a composite's picture.
TRUE_COLOUR: tuple[str, str, str] = ("B04", "B03", "B02")

#: Digital numbers per unit of surface reflectance (DN = reflectance x 10000) at every
#: processing baseline once the BOA offset of 04.00+ is removed.
REFLECTANCE_SCALE: float = 10000.0

#: Pixel size of the default imagery, metres.
DEFAULT_RESOLUTION_M: float = 10.0
