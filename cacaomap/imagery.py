"""``cacaomap imagery``: composites of real acquisitions, the synthetic landscape, chips."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from cacaomap.grammar import CommandError
from cacaomap.sources import ImagerySource, RadarSource


def composite(
    *,
    period: str,
    out: Path,
    source: ImagerySource,
    geotiff: list[Path] | None = None,
    mask_files: list[Path] | None = None,
    bbox: list[float] | None = None,
    bands: list[str] | None = None,
    mask: Literal["scl", "csmask", "none"] = "scl",
    method: Literal["median", "best"] = "median",
    date: str | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    bounds: list[float] | None = None,
    chunk: int = 512,
    scheduler: str | None = None,
    min_items: int = 1,
    snow_is_clear: bool = False,
    cloud_buffer: int = 2,
) -> None:
    r"""Composite a period's Sentinel-2 L2A acquisitions into one COG with a count band.

    Per pixel, the median (or the highest-NDVI observation, ``--method best``) of the
    clear observations (SCL, or the ukis-csmask cloud model with ``--mask csmask``;
    ``--mask none`` only when asked), with the BOA offset of processing baseline 04.00+
    removed, and a last band ``clear_count``. Computed on dask block by block; memory
    is bounded by the block, not the area.

    Args:
        period: ``START/END`` in ISO dates, both days included (``2024-01-01/2024-12-31``).
        out: Output COG.
        source: Where the acquisitions come from (or ``--geotiff``).
        geotiff: Stacked GeoTIFFs on one grid (the model's bands, ``DATE`` tag), one per
            acquisition, instead of a STAC/SAFE source.
        mask_files: One-band masks (non-zero = clear) for ``--geotiff``, same order.
        bbox: West south east north in degrees (a search's area, and the grid if no
            ``--bounds``).
        bands: Bands in model order (default: the ten bands of the default model).
        mask: Where clear observations come from: ``scl``, ``csmask`` or ``none``.
        method: ``median`` of clear observations or ``best`` pixel (highest NDVI).
        date: ``YYYYMMDD`` tagged as the composite's DATE (default: the period's end).
        crs: Target CRS (default: the first item's).
        resolution: Target pixel size in CRS units (default: the first band's).
        bounds: Target left bottom right top in the target CRS (default: the first
            item's footprint).
        chunk: Dask block side in pixels (memory: blocks x dates x bands x 4 bytes).
        scheduler: A dask.distributed scheduler address (``tcp://host:8786``); default:
            the local threaded scheduler.
        min_items: Fewest readable items to go on (unreadable ones are skipped and listed
            in the lineage).
        snow_is_clear: Count SCL snow (class 11) as a clear observation.
        cloud_buffer: Pixels by which clouds and shadows are grown (their faint edges
            escape the masks).

    Writes:
        OUT: a COG of the bands (harmonised DN, reflectance x 10000) and ``clear_count``,
        with the period, the method and the items read in its tags (lineage). Written
        whole or not at all.

    Examples:
        cacaomap imagery composite --stac catalog.json --period 2024-01-01/2024-12-31 \
            --out s2_2024.tif
        cacaomap imagery composite --safe products/ --period 2022-01-01/2022-12-31 \
            --mask csmask --out c.tif
        cacaomap imagery composite --search https://earth-search.aws.element84.com/v1 \
            --bbox -76.6 -8.3 -76.5 -8.2 --max-cloud 60 --period 2024-06-01/2024-09-30 \
            --out c.tif
    """
    from rich.progress import Progress

    from serving.bands import DEFAULT_BANDS
    from serving.imagery.composite import write_composite
    from serving.imagery.geotiffs import load_geotiffs
    from serving.imagery.sources import Grid, grid_of_first_item, in_period, load_items

    if source.given() + (geotiff is not None) != 1:
        raise CommandError("give exactly one of --stac, --safe, --search or --geotiff")
    band_names = list(bands or DEFAULT_BANDS)
    if geotiff is not None:
        if mask == "scl" and not mask_files:
            raise CommandError("stacked GeoTIFFs carry no SCL: give --mask-files, "
                               "--mask csmask or --mask none")
        loaded = load_geotiffs(geotiff, band_names, mask_files, chunk,
                               mask="csmask" if mask == "csmask" else None,
                               cloud_buffer=cloud_buffer)
        loaded.acquisitions = in_period(loaded.acquisitions, period)
    else:
        items = in_period(source.items([period], bbox), period)
        grid = None
        if crs or resolution or bounds:
            first = grid_of_first_item(items, band_names[0], resolution)
            grid = Grid(crs=crs or first.crs, resolution=resolution or first.resolution,
                        bounds=tuple(bounds) if bounds else first.bounds)  # type: ignore[arg-type]
        loaded = load_items(items, band_names, mask=mask, grid=grid, chunk=chunk,
                            snow_is_clear=snow_is_clear, min_items=min_items,
                            cloud_buffer=cloud_buffer, remote=source.remote)
    for item_id, why in loaded.skipped.items():
        print(f"skipped {item_id}: {why}")
    if loaded.reprojected:
        print(f"reprojected to {loaded.grid.crs}: {', '.join(loaded.reprojected)}")
    with Progress() as bar:
        task = bar.add_task(f"composite of {len(loaded.acquisitions)} acquisitions",
                            total=None)
        result = write_composite(
            loaded, out, method=method, period=period, date=date, scheduler=scheduler,
            on_block=lambda done, total: bar.update(task, completed=done, total=total))
    print(f"wrote {result.path}: {len(result.items)} acquisitions ({method}, mask "
          f"{mask}), {result.clear_fraction:.0%} of observations clear, "
          f"{result.never_clear_fraction:.1%} of pixels never seen clearly")


def stack_radar(
    *,
    optical: Path,
    out: Path,
    radar_source: RadarSource,
    period: str = "",
    workers: int = 2,
) -> None:
    r"""Stack a period's Sentinel-1 statistics onto its optical composite, as one COG.

    Per pixel over the period's radar acquisitions (VV and VH backscatter, gamma0 or
    sigma0): the mean of linear power, the standard deviation and the 10th and 90th
    percentiles of the dB values, and the VH/VV ratio, all in dB, with a last band
    ``radar_count``. Every file is read onto the optical composite's grid and resampled
    in linear power (a dB file is converted first); nodata, zero power (border noise)
    and a band described ``mask``/``layover``/``shadow`` are dropped. Units come from
    ``--radar-units``, else the file's tags or name, and are checked against the values:
    a "linear" file whose values look like dB is refused.

    Args:
        optical: The period's optical composite (``cacaomap imagery composite``); its
            grid is the stack's.
        out: Output COG.
        radar_source: The acquisitions: files (``--radar``; bands described
            ``VV``/``VH``, else in that order, or VV alone) or a STAC API search
            (``--radar-search``, over the optical composite's bounds and ``--period``).
        period: ``START/END`` (ISO dates): acquisitions dated (by a ``YYYYMMDD`` in the
            file name, or the item's datetime) outside it are left out; default: every
            file (a search needs it).
        workers: Blocks computed at once (threads; memory grows with them, never with
            the area).

    Writes:
        OUT: the optical composite's bands unchanged, then ``VV_mean_db``,
        ``VV_std_db``, ``VV_p10_db``, ``VV_p90_db``, the same for VH, ``VHVV_ratio_db``
        (uint16, dB = DN / 100 - 50, 0 = not seen by radar) and ``radar_count``; the
        radar files and the units they were read in are in its tags. Written whole or
        not at all.

    Examples:
        cacaomap imagery stack-radar --optical s2_2024.tif \
            --radar s1/S1A_*_2024*.tif --period 2024-01-01/2024-12-31 --out s1s2_2024.tif
        cacaomap imagery stack-radar --optical c.tif --radar img_radar.tif \
            --radar-units linear --out stacked.tif
        cacaomap imagery stack-radar --optical s2_2024.tif --period 2024-01-01/2024-12-31 \
            --radar-search https://planetarycomputer.microsoft.com/api/stac/v1 \
            --radar-sign planetary-computer --out s1s2_2024.tif
    """
    from rich.progress import Progress

    from serving.radar.stack import stack_radar as stack

    if not optical.is_file():
        raise CommandError(f"--optical {optical}: no such file")
    if not radar_source.given():
        raise CommandError("give --radar files or --radar-search")
    if workers < 1:
        raise CommandError(f"--workers is at least 1; got {workers}")
    files = radar_source.files([period], lonlat_bounds(optical))
    with Progress() as bar:
        task = bar.add_task(f"radar statistics of {len(files)} acquisitions", total=None)
        result = stack(optical, files, out, period=period, workers=workers,
                       on_block=lambda done, total: bar.update(task, completed=done,
                                                               total=total))
    for note in result.notes:
        print(f"note: {note}")
    if files and files[0].speckle.filter != "none":
        print(f"speckle filter: {files[0].speckle.describe()}, on each acquisition")
    read = [f.units for f in files if f.name in result.radar_items]
    units = ", ".join(f"{read.count(u)} in {u}" for u in sorted(set(read))) or "none"
    print(f"wrote {result.path}: {len(result.radar_items)} radar acquisitions "
          f"({units}), {result.radar_seen_fraction:.0%} of pixels "
          f"seen by radar, {result.radar_only_fraction:.1%} by radar alone")


def synth(
    out: Path = Path("datasets/synthetic/data/demo"),
    size: int = 512,
    seed: int = 0,
    acquisitions: int = 6,
    stacked: bool = False,
    polygons: bool = True,
) -> None:
    """Generate the synthetic Sentinel-2 L2A landscape near Tocache (the demo's data).

    By default a STAC catalogue of ``acquisitions`` dates per period (reference and
    monitoring year), each with its own clouds, SCL, per-band COGs at 10 and 20 m and
    processing-baseline metadata, with truth labels per period (see
    ``training/synthetic/time_series.py``). ``--stacked`` writes instead one stacked
    10-band GeoTIFF per date with its labels (the pre-stacked input).

    Args:
        out: Output folder (replaced atomically).
        size: Scene width and height in pixels (10 m; even for the time series).
        seed: Random seed; the same seed writes the same files.
        acquisitions: Acquisitions per period (time series).
        stacked: Write two stacked scenes instead of the time series.
        polygons: Also write label polygons (GeoPackage; stacked scenes only).

    Writes:
        OUT/stac/catalog.json and the acquisitions' COGs, OUT/labels/ (truth per period),
        the plots as an EUDR statement (``plots_eudr.geojson``) and their truth, the
        region; with ``--stacked``, OUT/images and OUT/labels.

    Examples:
        cacaomap imagery synth --out datasets/synthetic/data/demo --size 768
        cacaomap imagery synth --stacked --out /tmp/landscape --size 256 --seed 3
    """
    from training.synthetic import LandscapeConfig, generate_landscape
    from training.synthetic.time_series import generate_time_series

    if size <= 0 or acquisitions <= 0:
        raise CommandError("--size and --acquisitions must be positive")
    config = LandscapeConfig(size=size, seed=seed, acquisitions=acquisitions)
    if stacked:
        path = generate_landscape(out, config, polygons)
        print(f"wrote synthetic landscape ({size}x{size} px, seed {seed}) to {path}")
        return
    path = generate_time_series(out, config)
    print(f"wrote {2 * acquisitions} synthetic acquisitions ({size}x{size} px, seed "
          f"{seed}) as a STAC catalogue: {path / 'stac' / 'catalog.json'}")


def array_chips(
    sources: list[Path],
    out: Path,
    size: int = 128,
    image_key: str = "img",
    mask_key: str = "msk",
    pixel_size: float = 30.0,
    overwrite: bool = False,
) -> None:
    """Cut labelled arrays without georeferencing (``.npz``) into GeoTIFF chips.

    The chips lie on a local grid (see :mod:`training.data.array_chips`): for training
    and scoring, never for hectares.

    Args:
        sources: ``.npz`` files with an image (H x W x bands) and a mask (H x W).
        out: Output folder (written all at once).
        size: Chip side in pixels.
        image_key: Key of the image array.
        mask_key: Key of the mask array.
        pixel_size: Nominal pixel size in metres.
        overwrite: Replace ``out`` if it exists.

    Writes:
        OUT/images/*.tif and OUT/labels/*.tif, one pair per chip.

    Examples:
        cacaomap imagery array-chips scenes/a.npz scenes/b.npz chips/ --size 128
    """
    from training.data.array_chips import write_array_chips

    chips = write_array_chips(sources, out, size, image_key, mask_key, pixel_size,
                              overwrite)
    print(f"wrote {len(chips)} chips of {size} px to {out}")


def lonlat_bounds(raster: Path) -> list[float]:
    """A raster's bounds in degrees (west, south, east, north), for a search."""
    import rasterio
    from rasterio.warp import transform_bounds

    try:
        with rasterio.open(raster) as src:
            return list(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))
    except (OSError, rasterio.errors.RasterioIOError) as err:
        raise CommandError(f"{raster}: not a readable raster ({err})") from err
