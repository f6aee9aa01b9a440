"""The ``cacaomap`` command: ``train`` (LightningCLI) and the project's other tools.

``cacaomap train fit|validate|test --config experiments/<name>.yaml`` is LightningCLI;
the other subcommands are typed functions turned into a CLI by jsonargparse. Heavy
imports happen inside the subcommands so that ``cacaomap --help`` is quick.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

from jsonargparse import auto_cli

from training.active_learning import active_learning
from training.crossval import crossval
from training.evaluate import evaluate
from training.labels_cli import suggest_labels
from training.plots_cli import plots_check, store_build


def synth(
    out: Path = Path("datasets/synthetic/data/demo"),
    size: int = 512,
    seed: int = 0,
    acquisitions: int = 6,
    stacked: bool = False,
    polygons: bool = True,
) -> None:
    """Generate the synthetic Sentinel-2 L2A landscape near Tocache.

    By default a STAC catalogue of ``acquisitions`` dates per period (reference and
    monitoring year), each with its own clouds, SCL, per-band COGs at 10 and 20 m and
    processing-baseline metadata, with truth labels per period (see
    ``training/synthetic/time_series.py``). ``--stacked true`` writes instead one
    stacked 10-band GeoTIFF per date with its labels (the pre-stacked input).

    Args:
        out: Output folder (replaced atomically).
        size: Scene width and height in pixels (10 m; even for the time series).
        seed: Random seed; the same seed writes the same files.
        acquisitions: Acquisitions per period (time series).
        stacked: Write two stacked scenes instead of the time series.
        polygons: Also write label polygons (GeoPackage; stacked scenes only).
    """
    from training.synthetic import LandscapeConfig, generate_landscape
    from training.synthetic.time_series import generate_time_series

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

    Writes ``out/images`` and ``out/labels`` on a local grid (see
    :mod:`training.data.array_chips`): for training and scoring, never for hectares.

    Args:
        sources: ``.npz`` files with an image (H x W x bands) and a mask (H x W).
        out: Output folder (written all at once).
        size: Chip side in pixels.
        image_key: Key of the image array.
        mask_key: Key of the mask array.
        pixel_size: Nominal pixel size in metres.
        overwrite: Replace ``out`` if it exists.
    """
    from training.data.array_chips import write_array_chips

    try:
        chips = write_array_chips(sources, out, size, image_key, mask_key, pixel_size,
                                  overwrite)
    except ValueError as error:
        raise SystemExit(f"cacaomap array-chips: {error}") from error
    print(f"wrote {len(chips)} chips of {size} px to {out}")


def export(
    checkpoint: Path | None = None,
    run_id: str | None = None,
    name: str = "cacaomap",
    models_dir: Path = Path("models"),
    tile_size: int = 256,
    overlap: int = 32,
    parity_images: Path | None = None,
    register: bool = True,
    alias: str = "candidate",
) -> None:
    """Export a checkpoint (or a run's best checkpoint) to ONNX + contract.

    Parity with PyTorch is checked on random and real tiles before anything is
    registered (MLflow registered model + alias, BentoML model store); the model folder
    models/<name>/<version>/ appears only when everything succeeded.

    Args:
        checkpoint: A Lightning checkpoint of the task.
        run_id: Or an MLflow run whose best checkpoint to export, or a registered model
            ``models:/<name>@<alias>`` (its training run is re-exported).
        name: Registered model name.
        models_dir: Root of the model folders.
        tile_size: Tile side the service works at.
        overlap: Default overlap between scene windows.
        parity_images: Imagery for the parity check (default: the training imagery).
        register: Register in MLflow and the BentoML store.
        alias: MLflow alias set on the new version.
    """
    from training.export.exporter import export_model
    from training.export.registry import (
        checkpoint_from_run,
        run_of_model_uri,
        test_metrics_of_run,
    )

    if (checkpoint is None) == (run_id is None):
        raise SystemExit("give exactly one of --checkpoint or --run_id")
    if run_id is not None and run_id.startswith("models:/"):
        run_id = run_of_model_uri(run_id)
    metrics = test_metrics_of_run(run_id) if run_id else {}
    with ExitStack() as stack:
        ckpt = checkpoint or stack.enter_context(checkpoint_from_run(str(run_id)))
        path = export_model(
            ckpt, name=name, models_dir=models_dir, tile_size=tile_size,
            overlap=overlap, parity_images=parity_images, mlflow_run_id=run_id,
            register=register, alias=alias, test_metrics=metrics,
        )
    print(f"exported {path}")


def composite(
    period: str | None = None,
    out: Path | None = None,
    stac: Path | None = None,
    safe: Path | None = None,
    geotiff: list[Path] | None = None,
    mask_files: list[Path] | None = None,
    search: str | None = None,
    bbox: list[float] | None = None,
    collection: str = "sentinel-2-l2a",
    max_cloud: float | None = None,
    max_items: int = 1000,
    sign: Literal["none", "planetary-computer"] = "none",
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
    """Composite a period's Sentinel-2 L2A acquisitions into one COG with a count band.

    Per pixel, the median (or the highest-NDVI observation, ``--method best``) of the
    clear observations (SCL, or the ukis-csmask cloud model with ``--mask csmask``;
    ``--mask none`` only when asked), with the BOA offset of processing baseline 04.00+
    removed, and a last band ``clear_count``. Computed on dask block by block.

    Args:
        period: ``START/END`` in ISO dates, both days included (``2024-01-01/2024-12-31``;
            required).
        out: Output COG (required).
        stac: A STAC ItemCollection, catalogue or item JSON on disk.
        safe: A SAFE L2A folder, or a folder holding SAFE folders (every ``*.SAFE``
            in it); each product is made into a STAC item.
        geotiff: Stacked GeoTIFFs on one grid (the model's bands, ``DATE`` tag), one
            per acquisition; ``--mask_files`` gives their clear-sky masks (one each).
        mask_files: One-band masks (non-zero = clear) for ``--geotiff``, same order.
        search: A STAC API URL to search (with ``--bbox``, ``--collection``).
        bbox: west, south, east, north in degrees (search, and the grid if no bounds).
        collection: STAC collection searched.
        max_cloud: Search only items under this eo:cloud_cover (percent).
        max_items: The most items a search may match (more is refused: narrow it).
        sign: Sign the searched items' hrefs: ``planetary-computer`` for Planetary
            Computer's private blobs (the planetary-computer package).
        bands: Bands in model order (default: the ten bands of the default model).
        mask: Where clear observations come from: ``scl``, ``csmask`` or ``none``.
        method: ``median`` of clear observations or ``best`` pixel (highest NDVI).
        date: ``YYYYMMDD`` tagged as the composite's DATE (default: the period's end).
        crs: Target CRS (default: the first item's).
        resolution: Target pixel size in CRS units (default: the first band's).
        bounds: Target left, bottom, right, top in the target CRS (default: the first
            item's footprint).
        chunk: Dask block side in pixels (memory: blocks x dates x bands x 4 bytes).
        scheduler: A dask.distributed scheduler address (``tcp://host:8786``); default:
            the local threaded scheduler.
        min_items: Fewest readable items to go on (unreadable ones are skipped and
            listed in the lineage).
        snow_is_clear: Count SCL snow (class 11) as a clear observation.
        cloud_buffer: Pixels by which clouds and shadows are grown (their faint edges
            escape the masks).
    """
    from rich.progress import Progress

    from serving.imagery.composite import CompositeError, write_composite
    from serving.imagery.geotiffs import load_geotiffs
    from serving.imagery.harmonise import HarmonisationError
    from serving.imagery.safe import SafeError
    from serving.imagery.sources import (
        Grid,
        ImageryError,
        grid_of_first_item,
        in_period,
        items_from_file,
        items_from_safe,
        load_items,
        search_items,
    )
    from training.synthetic.spectra import S2_BANDS

    if not period or out is None:
        raise SystemExit("composite: give --period START/END and --out FILE")
    sources = sum(x is not None for x in (stac, safe, search, geotiff))
    if sources != 1:
        raise SystemExit("give exactly one of --stac, --safe, --search or --geotiff")
    band_names = list(bands or S2_BANDS)
    try:
        if geotiff is not None:
            if mask == "scl" and not mask_files:
                raise ImageryError("stacked GeoTIFFs carry no SCL: give --mask_files, "
                                   "--mask csmask or --mask none")
            loaded = load_geotiffs(geotiff, band_names, mask_files, chunk,
                                   mask="csmask" if mask == "csmask" else None,
                                   cloud_buffer=cloud_buffer)
            loaded.acquisitions = in_period(loaded.acquisitions, period)
        else:
            if stac is not None:
                items = items_from_file(stac)
            elif safe is not None:
                products = [safe] if safe.suffix.upper() == ".SAFE" else sorted(
                    p for p in safe.iterdir() if p.suffix.upper() == ".SAFE")
                if not products:
                    raise ImageryError(f"no SAFE product in {safe}")
                items = items_from_safe(products)
            else:
                if not bbox:
                    raise SystemExit("--search needs --bbox west,south,east,north")
                items = search_items(str(search), bbox, period, collection, max_cloud,
                                     max_items=max_items, sign=sign)
            items = in_period(items, period)
            grid = None
            if crs or resolution or bounds:
                first = grid_of_first_item(items, band_names[0], resolution)
                grid = Grid(crs=crs or first.crs,
                            resolution=resolution or first.resolution,
                            bounds=tuple(bounds) if bounds else first.bounds)  # type: ignore[arg-type]
            loaded = load_items(items, band_names, mask=mask, grid=grid, chunk=chunk,
                                snow_is_clear=snow_is_clear, min_items=min_items,
                                cloud_buffer=cloud_buffer)
    except (ImageryError, SafeError, HarmonisationError, CompositeError) as err:
        raise SystemExit(f"composite: {err}") from err
    for item_id, why in loaded.skipped.items():
        print(f"skipped {item_id}: {why}")
    if loaded.reprojected:
        print(f"reprojected to {loaded.grid.crs}: {', '.join(loaded.reprojected)}")
    with Progress() as bar:
        task = bar.add_task(f"composite of {len(loaded.acquisitions)} acquisitions",
                            total=None)
        try:
            result = write_composite(
                loaded, out, method=method, period=period, date=date, scheduler=scheduler,
                on_block=lambda done, total: bar.update(task, completed=done, total=total))
        except CompositeError as err:
            raise SystemExit(f"composite: {err}") from err
    print(f"wrote {result.path}: {len(result.items)} acquisitions ({method}, mask "
          f"{mask}), {result.clear_fraction:.0%} of observations clear, "
          f"{result.never_clear_fraction:.1%} of pixels never seen clearly")


def classify(
    source: Path,
    out: Path | None = None,
    model: Path | None = None,
    url: str | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    workers: int = 1,
    scheduler: str | None = None,
) -> None:
    """Classify GeoTIFF scenes (or composites) into COG class maps, offline or via a service.

    Beside each class map, offline, its per-pixel confidence (the blended probability of
    the class given, percent; ``x.classes.tif`` -> ``x.confidence.tif``).

    One scene file: ``--out`` is the output file (default: <scene>_classes.tif). A
    folder of scenes or a text file listing scenes (one path per line): ``--out`` is a
    folder; each scene is a dask task, outputs are named by the scene's and the model's
    sha256, so a rerun skips what is done (resumable).

    Args:
        source: A scene (.tif), a folder of scenes, or a .txt list of scene paths.
        out: Output file (one scene) or folder (several).
        model: Model folder (default: the newest under models/cacaomap/); with --url the
            service's own model is used.
        url: The service (one URL; several replicas sit behind a load balancer there).
        overlap: Overlap between windows (default: the contract's; one scene only).
        batch_size: Windows per ONNX Runtime call (one scene only).
        workers: Scenes in flight on the local dask scheduler.
        scheduler: A dask.distributed scheduler address (``tcp://host:8786``); its
            workers are the concurrency.
    """
    from serving.inference.confidence import confidence_path
    from serving.inference.many_scenes import classify_many, scene_list
    from serving.inference.model_store import resolve_model_dir
    from serving.inference.scene import classify_file
    from serving.inference.tiles import TileClassifier

    if url and "," in url:
        raise SystemExit("--url takes one URL: put the replicas behind a load balancer "
                         "and give its URL; --workers sets the requests in flight")
    files = scene_list([source])
    single = source.suffix.lower() in (".tif", ".tiff") and not url
    if single:
        classifier = TileClassifier.from_model_dir(resolve_model_dir(model))
        target = out or files[0].with_name(f"{files[0].stem}_classes.tif")
        result = classify_file(files[0], target, classifier, overlap=overlap,
                               batch_size=batch_size, progress=True,
                               confidence=confidence_path(target))
        print(f"wrote {result.path} ({result.width} x {result.height}) and its "
              f"confidence {confidence_path(target).name} on {classifier.provider}")
        for name, ha in (result.hectares or {}).items():
            print(f"  {name:<20} {ha:12.2f} ha")
        return
    if out is None:
        raise SystemExit("several scenes: give --out FOLDER")
    if url:
        import httpx

        served = httpx.post(f"{url.rstrip('/')}/model", json={}, timeout=60).json()
        batch = classify_many(files, out, served["onnx_sha256"], url=url, workers=workers,
                              scheduler=scheduler, tta=served.get("tta", "none"))
    else:
        model_dir = resolve_model_dir(model)
        local = TileClassifier.from_model_dir(model_dir)
        batch = classify_many(files, out, local.contract.onnx_sha256, model_dir=model_dir,
                              workers=workers, scheduler=scheduler, tta=local.tta)
    print(f"{len(batch.done)} classified, {len(batch.skipped)} already done, "
          f"{len(batch.failed)} failed -> {out}")
    for scene, error in batch.failed.items():
        print(f"  FAILED {scene}: {error}")
    if batch.failed:
        raise SystemExit(1)


def serve(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 3000,
    models_dir: Path = Path("models"),
) -> None:
    """Serve a model with BentoML (``bentoml serve serving.http.service:CacaoMap``).

    Args:
        model: A model folder, ``models:/<name>@<alias>`` from the MLflow registry
            (downloaded into models_dir), or ``bento:<name>:<version>``; default: the
            newest under models/cacaomap/.
        host: Address to bind (loopback by default).
        port: Port.
        models_dir: Where registered models are downloaded to.
    """
    import os

    if model and model.startswith("models:/"):
        from training.export.registry import resolve_model_uri

        model = str(resolve_model_uri(model, models_dir))
    env = os.environ | ({"CACAOMAP_MODEL": model} if model else {})
    os.execvpe(sys.executable, [sys.executable, "-m", "bentoml", "serve",
                                "serving.http.service:CacaoMap", "--host", host,
                                "--port", str(port)], env)


def bento(model: Path | None = None, gpu: bool = False) -> None:
    """Build the Bento (``serving/`` only, no torch) from this installation.

    The same Bento as ``bentoml build`` at the repository root, but built from the
    installed package, so it needs no checkout. Serve it with ``bentoml serve <tag>``.

    Args:
        model: A model folder to save into the BentoML model store first (the Bento
            serves ``cacaomap:latest`` from the store).
        gpu: The GPU Bento: onnxruntime-gpu, a CUDA base image, one GPU, and
            ``CACAOMAP_PROVIDERS=cuda`` (it refuses to start where CUDA is missing).
    """
    from serving.http.bento import build_bento

    print(f"built {'GPU ' if gpu else ''}Bento {build_bento(model, gpu=gpu)}")


def baseline(
    *,
    reference: Path,
    current: Path,
    out: Path = Path("report"),
    zones: Path | None = None,
    reference_sample: Path | None = None,
    classes: Path | None = None,
    model: Path | None = None,
    min_loss_ha: float = 0.1,
    min_loss_fraction: float = 0.01,
    min_valid_fraction: float = 0.8,
) -> None:
    """Deforestation baseline: forest at the reference date and its loss by driver.

    Args:
        reference: Class map (or scene, classified first) at the reference date.
        current: Class map (or scene) at the monitoring date.
        out: Report folder (report.json, zones.geojson, zones.csv, map.png).
        zones: Farm plots or districts (GeoJSON/GeoPackage, any CRS).
        reference_sample: Labelled points (field ``reference``) for accuracy and area
            estimates with 95% confidence intervals (Olofsson et al. 2014).
        classes: Class schema YAML (default: the model's, else datasets/classes.yaml).
        model: Model folder for classifying scenes given instead of class maps.
        min_loss_ha: Loss under this is map noise.
        min_loss_fraction: ... and under this share of the plot.
        min_valid_fraction: Less observed than this (and no loss) → insufficient_data.
    """
    from rich.console import Console
    from rich.table import Table

    from serving.areas import AreaError
    from serving.baseline.change import BaselineError, Thresholds
    from serving.baseline.report import as_class_map, build_report, write_report
    from serving.classes import ClassSchemaError, load_classes
    from serving.inference.contract import ContractError
    from serving.inference.model_store import resolve_model_dir
    from serving.inference.tiles import InputError, TileClassifier

    try:
        classifier = (TileClassifier.from_model_dir(resolve_model_dir(model)) if model
                      else None)
        schema = classifier.contract.schema if classifier and not classes else (
            load_classes(classes))
        thresholds = Thresholds(min_loss_ha, min_loss_fraction, min_valid_fraction)
        for given in (reference, current, zones, reference_sample):
            if given is not None and not given.exists():
                raise FileNotFoundError(f"no such file: {given}")
        out.mkdir(parents=True, exist_ok=True)
        reference = as_class_map(reference, classifier, out)
        current = as_class_map(current, classifier, out)
        report, maps, zone_frame = build_report(reference, current, schema, zones,
                                                thresholds, reference_sample)
        written = write_report(report, maps, zone_frame, schema, out)
    except (BaselineError, AreaError, InputError, ContractError, ClassSchemaError,
            FileNotFoundError, ValueError) as err:  # ZoneError is a ValueError
        raise SystemExit(f"baseline: {err}") from err
    land = report["landscape"]
    table = Table(title="Landscape baseline (ground hectares)")
    table.add_column("quantity")
    table.add_column("ha", justify="right")
    table.add_row("forest at reference date", f"{land['forest_ref_ha']:,.2f}")
    table.add_row("stable forest", f"{land['stable_forest_ha']:,.2f}")
    for driver, ha in land["forest_loss_by_driver_ha"].items():
        table.add_row(f"forest → {driver}", f"{ha:,.2f}")
    unobserved = land["forest_ref_unobserved_now_ha"]
    table.add_row("forest unobserved at current date", f"{unobserved:,.2f}")
    console = Console()
    console.print(table)
    if "zones" in report:
        plots = Table(title="Plots")
        for col in ("plot", "forest ha", "loss ha", "valid", "verdict"):
            plots.add_column(col)
        for z in report["zones"]:
            plots.add_row(z["zone_id"], f"{z['forest_ref_ha']:.2f}",
                          f"{z['forest_loss_ha']:.2f}", f"{z['valid_fraction']:.0%}",
                          z["verdict"])
        console.print(plots)
        console.print(f"verdicts: {report['verdicts']}")
    console.print("wrote " + ", ".join(str(p) for p in written))


def sample_points(
    class_map: Path, out: Path, classes: Path | None = None, users_accuracy: float = 0.8,
    target_se_overall: float = 0.01, seed: int = 0, reference_map: Path | None = None,
) -> None:
    """Draw a stratified random sample of points to label (Olofsson et al. 2014, 5.1).

    Args:
        class_map: The map whose classes are the strata.
        out: GeoJSON of points with ``map_class`` and an empty ``reference`` field.
        classes: Class schema YAML.
        users_accuracy: Anticipated user's accuracy of every class.
        target_se_overall: Target standard error of overall accuracy.
        seed: Random seed.
        reference_map: Class map at the reference date: strata become transitions.
    """
    from serving.baseline.sampling import draw_sample
    from serving.classes import load_classes

    path = draw_sample(class_map, out, load_classes(classes), users_accuracy,
                       target_se_overall, seed, reference_map)
    print(f"wrote {path}")


def demo_serve(experiment: str = "cacaomap-demo") -> None:
    """Export the newest demo run, serve it with bentoml on 127.0.0.1, classify over HTTP.

    Args:
        experiment: MLflow experiment whose newest finished run is exported.
    """
    from training.demo import run_demo_serving

    run_demo_serving(experiment)


def bench(scene_size: int = 10980, service_seconds: float = 10.0,
          experiment: str = "cacaomap-demo", options_only: bool = False,
          redo: str = "") -> None:
    """Measure model, scene and service throughput (``make bench``); see the README.

    Args:
        scene_size: Side of the generated scene in pixels (a Sentinel-2 tile: 10980).
        service_seconds: How long each client-count level of the service runs.
        experiment: MLflow experiment whose newest run (and exported model) is measured.
        options_only: Only (re)measure the ONNX Runtime option table into the newest
            benchmark JSON.
        redo: Comma list of sections to measure again although today's JSON has them
            (``scene,service``); the others are reused.
    """
    from training.bench.runner import add_session_options, run_bench

    if options_only:
        add_session_options()
        return
    run_bench(experiment=experiment, scene_size=scene_size, service_seconds=service_seconds,
              redo=tuple(r.strip() for r in redo.split(",") if r.strip()))


def mlflow_ui_command() -> str:
    """The command that opens the MLflow UI on this project's runs."""
    import os

    from training.tracking import DEFAULT_TRACKING_URI

    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)
    return f".venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def ui_hint() -> None:
    """Print the command that opens the MLflow UI on the runs."""
    print(f"Open the MLflow UI on the runs:\n  {mlflow_ui_command()}")


#: Set to see the traceback of a user error instead of its one-line message.
TRACEBACK_VARIABLE = "CACAOMAP_TRACEBACK"


def user_error_line(command: str, err: BaseException) -> str:
    """A user error (bad input, missing file) as the one line the command ends with."""
    message = " ".join(str(err).split()) or type(err).__name__
    return f"cacaomap {command}: {message}"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cacaomap`` console script.

    A user error (a ``ValueError``, which every input check of the project raises, or
    an ``OSError``: a file that is missing or unreadable, a server that does not
    answer) ends the command with one line and exit status 1, never a traceback;
    ``CACAOMAP_TRACEBACK=1`` shows the traceback. Argument errors are jsonargparse's
    (usage and one ``error:`` line, status 2).
    """
    import os

    args = sys.argv[1:] if argv is None else argv
    command = " ".join(args[:2] if args[:1] in (["store"], ["plots"], ["train"])
                       else args[:1])
    try:
        _dispatch(args)
    except (ValueError, OSError) as err:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        raise SystemExit(user_error_line(command, err)) from None


def _dispatch(args: list[str]) -> None:
    if args and args[0] == "train":
        import warnings

        from training.lightning_cli import run_lightning_cli

        # sys.argv stays as it is: DDP re-executes it in each child process. LightningCLI
        # warns when both sys.argv and args are given; here that is by design.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        run_lightning_cli(args[1:])
        return
    auto_cli(
        {"synth": synth, "array-chips": array_chips, "composite": composite,
         "export": export,
         "classify": classify, "evaluate": evaluate, "crossval": crossval,
         "active-learning": active_learning, "serve": serve,
         "bento": bento, "baseline": baseline,
         "sample-points": sample_points, "suggest-labels": suggest_labels,
         "demo-serve": demo_serve, "mlflow-ui": ui_hint,
         "bench": bench, "store": {"build": store_build}, "plots": {"check": plots_check}},
        args=args,
    )


if __name__ == "__main__":
    main()
