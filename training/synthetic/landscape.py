"""Layout and rendering of the synthetic Tocache landscape at two dates.

A :class:`Landscape` is fixed by its :class:`LandscapeConfig`: parcels (a jittered
Voronoi tessellation) take a land cover at the reference date from a smooth "frontier"
field (forest far from the river, farms near it, palm in clusters), and some forest
parcels near the frontier are cleared for cocoa, palm or degraded land by the
monitoring date. A river, a tributary and a town are ``other``; clouds, shadows and the
swath edge are nodata. Everything is a function of pixel coordinates, so any strip of
rows can be rendered on its own (:meth:`Landscape.render`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from training.synthetic.noise import fractal_noise, gaussian_noise, value_noise
from training.synthetic.spectra import (
    HAZE_SHAPE,
    S2_BANDS,
    endmember,
    mix,
    to_digital_numbers,
)

NODATA, FOREST, COCOA, PALM, DEGRADED, OTHER = 0, 1, 2, 3, 4, 5

Int = NDArray[np.int64]


@dataclass(frozen=True)
class LandscapeConfig:
    """What the synthetic landscape looks like.

    Attributes:
        size: Width and height in pixels (512 for tests, 10980 for a full S2 tile).
        seed: Seed of every random choice; the same seed gives the same files.
        pixel_size: Ground sampling distance in metres.
        origin: Upper-left corner (easting, northing) in ``crs``; near Tocache.
        crs: Coordinate reference system of the rasters.
        dates: Reference and monitoring dates as ``YYYYMMDD``.
        parcel_size: Mean parcel width in pixels.
        cloud_cover: Target cloud fraction at each date.
        clearing_rate: Chance that a forest parcel on the frontier is cleared.
        acquisitions: Acquisitions per period in a time series (:meth:`Landscape.
            render_acquisition`), each with its own clouds, shadows and swath edge.
        acquisition_cloud_cover: Range of the cloud fraction of one acquisition.
        persistent_cloud_plots: Share of plots under a cloud that stays over them in
            every acquisition of one period (their truth: not observed enough).
        radar: Also write Sentinel-1 acquisitions every 12 days
            (:mod:`training.synthetic.radar`; time series only).
    """

    size: int = 512
    seed: int = 0
    pixel_size: float = 10.0
    origin: tuple[float, float] = (333_000.0, 9_097_000.0)
    crs: str = "EPSG:32718"
    dates: tuple[str, str] = ("20201215", "20240820")
    parcel_size: float = 22.0
    cloud_cover: tuple[float, float] = (0.04, 0.07)
    clearing_rate: float = 0.45
    acquisitions: int = 6
    acquisition_cloud_cover: tuple[float, float] = (0.2, 0.6)
    persistent_cloud_plots: float = 0.12
    radar: bool = True


@dataclass
class Strip:
    """Rows of one rendered acquisition and what is in them.

    Attributes:
        image: (bands, H, W) uint16 DN (reflectance x 10000), 0 outside the swath.
        cover: (H, W) land-cover code of the period (no clouds).
        cloud: (H, W) cloud opacity in [0, 1] (soft edges).
        shadow: (H, W) cloud shadow.
        outside: (H, W) outside the swath.
        water: (H, W) river and streams.
    """

    image: NDArray[np.uint16]
    cover: NDArray[np.uint8]
    cloud: NDArray[np.float32]
    shadow: NDArray[np.bool_]
    outside: NDArray[np.bool_]
    water: NDArray[np.bool_]


@dataclass
class Plot:
    """A farm plot: a pixel-aligned rectangle (row0, col0, rows, cols)."""

    plot_id: str
    row: int
    col: int
    height: int
    width: int
    purpose: str = "random"


@dataclass
class _Parcels:
    centres: NDArray[np.float64]
    tree: cKDTree
    cover: NDArray[np.uint8]  # (2, n) cover at each date
    gain: NDArray[np.float32]  # (2, n, bands) multiplicative spectral variation
    shade: NDArray[np.float32]  # cocoa shade-tree fraction
    palm_angle: NDArray[np.float32]
    palm_canopy: NDArray[np.float32]  # canopy closure, young plantations are open
    degraded_kind: NDArray[np.float32]  # 0 pasture ... 1 bare soil


class Landscape:
    """The synthetic landscape; render any strip of rows at either date."""

    def __init__(self, config: LandscapeConfig) -> None:
        """Lay out parcels, river, town, plots and forced clouds from the config."""
        self.config = config
        self.size = config.size
        self._rng = np.random.default_rng(config.seed)
        self._seed = int(config.seed) * 1009 + 17
        self.parcels = self._layout_parcels()
        s = self.size
        rng = self._rng
        self.river = (
            s * rng.uniform(0.25, 0.4), s * rng.uniform(0.03, 0.06),
            s * rng.uniform(0.6, 1.2), rng.uniform(0, 2 * np.pi),
            float(np.clip(s / 45, 4, 25)),
        )
        self.stream_x = s * rng.uniform(0.55, 0.8)
        town = max(12, int(s * 0.08))
        tc = int(s * rng.uniform(0.15, 0.35))
        tr = int(self._river_centre(np.array([tc]))[0] + self.river[4])
        self.town = (tr, tc, town, int(town * 1.3))
        self.plots = self._layout_plots()
        self.cloud_thresholds = tuple(
            self._cloud_threshold(d, config.cloud_cover[d]) for d in (0, 1)
        )
        self.persistent_clouds = self._layout_persistent_clouds()
        low, high = config.acquisition_cloud_cover
        covers = self._rng.uniform(low, high, (2, config.acquisitions))
        self.acquisition_thresholds = [
            [self._cloud_threshold(d, float(covers[d, k]), acquisition=k)
             for k in range(config.acquisitions)] for d in (0, 1)
        ]

    # ------------------------------------------------------------------ layout
    def _layout_parcels(self) -> _Parcels:
        rng, s, p = self._rng, self.size, self.config.parcel_size
        n_side = max(2, int(np.ceil(s / p)))
        gy, gx = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
        jitter = rng.uniform(-0.45, 0.45, (2, n_side, n_side))
        centres = np.stack(
            [((gy + 0.5 + jitter[0]) * p).ravel(), ((gx + 0.5 + jitter[1]) * p).ravel()],
            axis=1,
        )
        n = len(centres)
        cy = centres[:, 0].astype(np.int64)
        cx = centres[:, 1].astype(np.int64)
        frontier = self._frontier(cy, cx)
        palm_zone = value_noise(cy, cx, s / 3, self._seed + 11)

        p_forest = np.clip((frontier - 0.36) / 0.2, 0, 1)
        is_forest = rng.uniform(size=n) < p_forest
        u = rng.uniform(size=n)
        farm = np.where(
            palm_zone > 0.7, PALM, np.where(u < 0.5, COCOA, DEGRADED)
        ).astype(np.uint8)
        farm = np.where((palm_zone <= 0.7) & (u > 0.93), PALM, farm).astype(np.uint8)
        ref = np.where(is_forest, FOREST, farm).astype(np.uint8)

        # Clearing: forest on the frontier goes to cocoa, palm or degraded land.
        on_frontier = (frontier > 0.34) & (frontier < 0.56)
        cleared = is_forest & on_frontier & (
            rng.uniform(size=n) < self.config.clearing_rate
        )
        cleared |= is_forest & (rng.uniform(size=n) < 0.02)
        v = rng.uniform(size=n)
        driver = np.where(
            palm_zone > 0.55, PALM, np.where(v < 0.45, COCOA, np.where(v < 0.9,
                                                                       DEGRADED, PALM))
        ).astype(np.uint8)
        cur = np.where(cleared, driver, ref).astype(np.uint8)
        w = rng.uniform(size=n)
        cur = np.where((ref == DEGRADED) & (w < 0.15), COCOA, cur).astype(np.uint8)
        cur = np.where((ref == COCOA) & (w > 0.97), DEGRADED, cur).astype(np.uint8)

        bands = len(S2_BANDS)
        base_gain = rng.normal(1.0, 0.09, (n, 1)) * rng.normal(1.0, 0.045, (n, bands))
        date_gain = rng.normal(1.0, 0.03, (2, n, bands))
        return _Parcels(
            centres=centres,
            tree=cKDTree(centres),
            cover=np.stack([ref, cur]),
            gain=(base_gain[None] * date_gain).astype(np.float32),
            shade=rng.uniform(0.25, 0.7, n).astype(np.float32),
            palm_angle=rng.uniform(0, np.pi, n).astype(np.float32),
            palm_canopy=rng.uniform(0.45, 0.95, n).astype(np.float32),
            degraded_kind=rng.uniform(0, 1, n).astype(np.float32),
        )

    def _frontier(self, rows: Int, cols: Int) -> NDArray[np.float32]:
        """Remoteness in [0, 1]: high far from the river valley (forest), low near it."""
        s = self.size
        smooth = fractal_noise(rows, cols, s / 2.5, self._seed + 3, octaves=3)
        gradient = (cols / s).astype(np.float32)
        return (0.55 * smooth + 0.45 * gradient).astype(np.float32)

    def _river_centre(self, cols: NDArray[np.int64]) -> NDArray[np.float64]:
        base, amp, wavelength, phase, _ = self.river
        return (
            base
            + amp * np.sin(2 * np.pi * cols / wavelength + phase)
            + 0.3 * amp * np.sin(2 * np.pi * cols / (wavelength / 3.1) + 2 * phase)
        )

    def _layout_plots(self) -> list[Plot]:
        """Farm plots: some on cleared parcels, some in forest and farms, one clouded."""
        rng, s = self._rng, self.size
        n_plots = max(12, round(s * s / 90**2))
        p = self.parcels
        cleared = np.flatnonzero((p.cover[0] == FOREST) & (p.cover[1] != FOREST))
        taken = np.zeros((s, s), bool) if s <= 4096 else None
        plots: list[Plot] = []
        attempts = 0
        while len(plots) < n_plots and attempts < n_plots * 30:
            attempts += 1
            h, w = (int(v) for v in rng.integers(12, 36, 2))
            if len(plots) % 2 == 0 and len(cleared):
                cy, cx = p.centres[rng.choice(cleared)]
                purpose = "cleared_parcel"
            else:
                cy, cx = rng.uniform(0, s, 2)
                purpose = "random"
            r0 = int(np.clip(cy - h / 2 + rng.integers(-h // 3, h // 3 + 1), 0, s - h))
            c0 = int(np.clip(cx - w / 2 + rng.integers(-w // 3, w // 3 + 1), 0, s - w))
            if r0 + c0 < 0.1 * s or (s - r0 - h) + (s - c0 - w) < 0.1 * s:
                continue  # keep plots off the swath edges
            if taken is not None:
                if taken[r0 - 2 : r0 + h + 2, c0 - 2 : c0 + w + 2].any():
                    continue
                taken[r0 : r0 + h, c0 : c0 + w] = True
            plots.append(Plot(f"P{len(plots) + 1:04d}", r0, c0, h, w, purpose))
        # One plot of stable forest sits half under a cloud at the monitoring date: it
        # must come out "insufficient data", never "deforestation free".
        def stable_forest(plot: Plot) -> bool:
            _, idx = p.tree.query([plot.row + plot.height / 2, plot.col + plot.width / 2])
            return bool(p.cover[0][idx] == FOREST and p.cover[1][idx] == FOREST)

        stable = [q for q in plots if q.purpose == "random" and stable_forest(q)]
        clouded = stable[len(stable) // 2] if stable else plots[len(plots) // 2]
        clouded.purpose = "half_clouded"
        self.forced_clouds = [
            (clouded.row - 2, clouded.col - 2, clouded.height + 4, clouded.width // 2 + 2)
        ]
        return plots

    def _layout_persistent_clouds(self) -> list[list[tuple[int, int, int, int]]]:
        """Per period, rectangles under cloud in every acquisition of that period."""
        rng = np.random.default_rng(self.config.seed + 4242)
        candidates = [p for p in self.plots if p.purpose != "half_clouded"]
        n = round(self.config.persistent_cloud_plots * len(self.plots))
        chosen = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
        rects: list[list[tuple[int, int, int, int]]] = [[], []]
        for idx in chosen:
            plot = candidates[int(idx)]
            plot.purpose = "persistent_cloud"
            share = rng.uniform(0.5, 1.0)
            rects[int(rng.integers(0, 2))].append(
                (plot.row - 3, plot.col - 3, plot.height + 6,
                 int(plot.width * share) + 3))
        return rects

    def _cloud_field(self, rows: Int, cols: Int, date: int,
                     acquisition: int | None = None) -> NDArray[np.float32]:
        scale = float(np.clip(self.size / 6, 24, 160))
        seed = self._seed + 101 + 17 * date
        if acquisition is not None:
            seed += 7919 * (acquisition + 1)
        return fractal_noise(rows, cols, scale, seed, 4)

    def _cloud_threshold(self, date: int, cover: float,
                         acquisition: int | None = None) -> float:
        if cover <= 0:
            return 2.0
        step = max(1, self.size // 256)
        rows = np.arange(0, self.size, step)[:, None]
        cols = np.arange(0, self.size, step)[None, :]
        field = self._cloud_field(rows, cols, date, acquisition)
        return float(np.quantile(field, 1 - cover))

    # ---------------------------------------------------------------- render
    def render(
        self, row0: int, row1: int, date: int
    ) -> tuple[NDArray[np.uint16], NDArray[np.uint8]]:
        """Render rows ``row0:row1`` at date index 0 (reference) or 1 (monitoring).

        Returns:
            The image as uint16 DN (bands, H, W), 0 outside the swath, and the label
            raster (H, W) with nodata (0) under clouds, shadows and outside the swath.
        """
        strip = self._render(row0, row1, date, None)
        labels = strip.cover.copy()
        labels[(strip.cloud > 0) | strip.shadow | strip.outside] = NODATA
        return strip.image, labels

    def render_acquisition(self, row0: int, row1: int, date: int, acquisition: int
                           ) -> Strip:
        """Rows ``row0:row1`` of acquisition ``acquisition`` of period ``date``.

        Each acquisition has its own clouds (with the period's persistent clouds),
        shadows, swath edge, haze and noise; the land cover is the period's.
        """
        return self._render(row0, row1, date, acquisition)

    def _render(self, row0: int, row1: int, date: int, acquisition: int | None
                ) -> Strip:
        s, sd = self.size, self._seed + 1000 * date
        if acquisition is not None:
            sd += 50 * (acquisition + 1)
        rows = np.arange(row0, row1, dtype=np.int64)[:, None]
        cols = np.arange(s, dtype=np.int64)[None, :]
        rr, cc = np.broadcast_arrays(rows, cols)
        p = self.parcels
        _, parcel = p.tree.query(np.stack([rr.ravel(), cc.ravel()], 1) + 0.5)
        parcel = parcel.reshape(rr.shape)
        cover = p.cover[date][parcel].copy()
        refl = np.empty((len(S2_BANDS), *rr.shape), np.float32)

        def paint(mask: NDArray[np.bool_], value: NDArray[np.float32]) -> None:
            refl[:, mask] = value[:, mask] if value.shape[1:] else value[:, 0]

        canopy = 0.8 + 0.4 * value_noise(rows, cols, 1.6, sd + 5)
        # Crown gaps and treefall let understorey through: some forest pixels look
        # like the sunlit layer of a cocoa farm.
        gaps = np.clip((value_noise(rows, cols, 1.3, sd + 4) - 0.7) * 2.5, 0, 0.8)
        paint(cover == FOREST, mix(gaps, "cocoa_leaf", "forest") * canopy[None])
        shade = np.clip(
            p.shade[parcel] * (0.1 + 1.8 * value_noise(rows, cols, 2.0, sd + 6)), 0, 1
        )
        paint(cover == COCOA, mix(shade, "forest", "cocoa_leaf") * canopy[None])
        angle = p.palm_angle[parcel]
        rows_pattern = 0.5 + 0.5 * np.sin(
            2 * np.pi * (cc * np.cos(angle) + rr * np.sin(angle)) / 2.7
        )
        crown = np.clip(p.palm_canopy[parcel] * (0.1 + 1.1 * rows_pattern), 0, 1)
        paint(cover == PALM, mix(crown.astype(np.float32), "palm_crown", "palm_interrow"))
        kind = np.clip(
            p.degraded_kind[parcel] + 0.9 * (value_noise(rows, cols, 3, sd + 7) - 0.5),
            0, 1,
        ).astype(np.float32)
        degraded = np.where(
            kind[None] < 0.5,
            mix(kind * 2, "shrub", "pasture"),
            mix((kind - 0.5) * 2, "bare_soil", "pasture"),
        )
        paint(cover == DEGRADED, degraded)

        # River, tributary and town are "other".
        width = self.river[4]
        river = np.abs(rr - self._river_centre(cc)) < width / 2
        stream_centre = self.stream_x + 0.04 * s * np.sin(rr / (0.1 * s))
        stream = (np.abs(cc - stream_centre) < max(1.5, width / 5)) & (
            rr > self._river_centre(cc)
        )
        tr, tc, th, tw = self.town
        town = (rr >= tr) & (rr < tr + th) & (cc >= tc) & (cc < tc + tw)
        water = river | stream
        streets = ((rr - tr) % 9 < 2) | ((cc - tc) % 11 < 2)
        built = mix(
            np.where(streets, 0.3, 0.8 + 0.2 * value_noise(rows, cols, 1.5, sd + 8))
            .astype(np.float32), "built", "pasture",
        )
        cover[town] = OTHER
        paint(town, built)
        cover[water] = OTHER
        paint(water, endmember("water") * (0.9 + 0.2 * value_noise(rows, cols, 8, sd + 9)))

        refl *= np.moveaxis(p.gain[date][parcel], -1, 0)
        haze = (0.01 + 0.03 * fractal_noise(rows, cols, s / 3, sd + 10, 2))
        refl += np.asarray(HAZE_SHAPE, np.float32)[:, None, None] * haze[None]

        # Clouds with soft edges, and their shadows offset away from the sun.
        if acquisition is None:
            threshold = self.cloud_thresholds[date]
            forced_rects = list(self.forced_clouds) if date == 1 else []
        else:
            threshold = self.acquisition_thresholds[date][acquisition]
            forced_rects = self.persistent_clouds[date] + (
                list(self.forced_clouds) if date == 1 else [])
        cloud_field = self._cloud_field(rows, cols, date, acquisition)
        alpha = np.clip((cloud_field - threshold) / 0.04, 0, 1)
        for fr, fc, fh, fw in forced_rects:
            forced = (rr >= fr) & (rr < fr + fh) & (cc >= fc) & (cc < fc + fw)
            alpha = np.where(forced, 1.0, alpha)
        shadow_field = self._cloud_field(rows - 9, cols - 14, date, acquisition)
        shadow = (shadow_field > threshold) & (alpha == 0)
        refl[:, shadow] *= 0.35
        cloud = endmember("cloud") * (0.9 + 0.2 * value_noise(rows, cols, 4, sd + 12))
        refl = alpha[None] * cloud + (1 - alpha[None]) * refl
        noise_sigma = 0.004 + 0.03 * refl
        for b in range(refl.shape[0]):
            refl[b] += noise_sigma[b] * gaussian_noise(rows, cols, sd + 200 + b)

        image = to_digital_numbers(refl)
        outside = self.outside_swath(rr, cc, date if acquisition is None else acquisition)
        image[:, outside] = 0
        return Strip(image=image, cover=cover.astype(np.uint8),
                     cloud=alpha.astype(np.float32), shadow=shadow, outside=outside,
                     water=water)

    def outside_swath(self, rows: Int, cols: Int, corner: int) -> NDArray[np.bool_]:
        """The corner of the scene that the orbit did not image.

        Corners by ``corner % 4``: 0 upper left, 1 lower right, 2 upper right, 3 lower
        left (a date index or an acquisition index).
        """
        edge = 0.07 * self.size
        last = self.size - 1
        corner %= 4
        if corner == 0:
            return rows + cols < edge
        if corner == 1:
            return (last - rows) + (last - cols) < edge
        if corner == 2:
            return rows + (last - cols) < edge
        return (last - rows) + cols < edge
