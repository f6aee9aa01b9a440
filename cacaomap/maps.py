"""``cacaomap maps``: class maps of scenes, the deforestation baseline, a sample to label."""

from __future__ import annotations

from pathlib import Path

from cacaomap.grammar import CommandError


def classify(
    source: Path,
    out: Path | None = None,
    model: Path | None = None,
    url: str | None = None,
    token: str | None = None,
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
        token: The service's bearer token (``CACAOMAP_API_TOKEN`` on the server), with
            ``--url``; default: the ``CACAOMAP_API_TOKEN`` of this shell.
        overlap: Overlap between windows (default: the contract's; one scene only).
        batch_size: Windows per ONNX Runtime call (one scene only).
        workers: Scenes in flight on the local dask scheduler.
        scheduler: A dask.distributed scheduler address (``tcp://host:8786``); its
            workers are the concurrency.

    Writes:
        One scene: OUT (default ``<scene>_classes.tif``), a COG of class codes with the
        class names, the model's sha256 and the scene's in its tags, and beside it
        ``<out>.confidence.tif`` (``x.classes.tif`` -> ``x.confidence.tif``; the
        blended probability of the class given, percent, 255 = nodata) and, for a
        stacked optical + radar composite, ``<out>.sensors.tif`` (1 = classified with
        a clear optical observation, 2 = from radar alone); hectares per class are
        printed. Several scenes: per scene the same pair in OUT, named by the
        scene's and the model's sha256.

    Examples:
        cacaomap maps classify s2_2024.tif --model models/cacaomap/v2
        cacaomap maps classify scenes/ --out maps/ --workers 2
        cacaomap maps classify scenes.txt --out maps/ --url http://127.0.0.1:3000
    """
    from serving.inference.confidence import confidence_path
    from serving.inference.many_scenes import classify_many, scene_list
    from serving.inference.model_store import resolve_model_dir
    from serving.inference.scene import classify_file
    from serving.inference.tiles import TileClassifier

    if url and "," in url:
        raise CommandError("--url takes one URL: put the replicas behind a load "
                           "balancer and give its URL; --workers sets the requests in "
                           "flight")
    if token and not url:
        raise CommandError("--token goes with --url")
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
        _sensors_sidecar(files[0], target)
        for name, ha in (result.hectares or {}).items():
            print(f"  {name:<20} {ha:12.2f} ha")
        return
    if out is None:
        raise CommandError("several scenes: give --out FOLDER")
    if url:
        import os

        import httpx

        token = token or os.environ.get("CACAOMAP_API_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.post(f"{url.rstrip('/')}/model", json={}, timeout=60,
                            headers=headers)
        if answer.status_code != 200:
            raise CommandError(f"{url} answered {answer.status_code} to /model: "
                               f"{answer.text[:200]}")
        served = answer.json()
        batch = classify_many(files, out, served["onnx_sha256"], url=url, workers=workers,
                              scheduler=scheduler, tta=served.get("tta", "none"),
                              token=token)
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
        raise CommandError(f"{len(batch.failed)} of {len(files)} scenes failed (listed "
                           "above)")


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
    r"""Deforestation baseline of two class maps: forest at the reference date, its loss.

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

    Writes:
        OUT/report.json (landscape and per-zone figures, verdicts, lineage; with
        ``--reference-sample`` accuracy and area estimates with 95% CIs),
        OUT/zones.geojson, OUT/zones.csv and OUT/map.png (the transitions); scenes given
        instead of class maps are classified into OUT first.

    Examples:
        cacaomap maps baseline --reference maps/2020.tif --current maps/2024.tif \
            --zones plots.geojson --out report/
        cacaomap maps baseline --reference maps/2020.tif --current maps/2024.tif \
            --reference-sample labelled.geojson
    """
    from rich.console import Console
    from rich.table import Table

    from serving.baseline.change import Thresholds
    from serving.baseline.report import as_class_map, build_report, write_report
    from serving.classes import load_classes
    from serving.inference.model_store import resolve_model_dir
    from serving.inference.tiles import TileClassifier

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
    r"""Draw a stratified random sample of points to label (Olofsson et al. 2014, 5.1).

    Args:
        class_map: The map whose classes are the strata.
        out: GeoJSON of points with ``map_class`` and an empty ``reference`` field.
        classes: Class schema YAML.
        users_accuracy: Anticipated user's accuracy of every class.
        target_se_overall: Target standard error of overall accuracy.
        seed: Random seed.
        reference_map: Class map at the reference date: strata become transitions.

    Writes:
        OUT: GeoJSON points (EPSG:4326) with ``map_class``, the stratum's weight and an
        empty ``reference`` field to fill in (the map page's label mode does).

    Examples:
        cacaomap maps sample-points maps/2024.tif sample.geojson --users-accuracy 0.8
        cacaomap maps sample-points maps/2024.tif sample.geojson \
            --reference-map maps/2020.tif
    """
    from serving.baseline.sampling import draw_sample
    from serving.classes import load_classes

    path = draw_sample(class_map, out, load_classes(classes), users_accuracy,
                       target_se_overall, seed, reference_map)
    print(f"wrote {path}")


def _sensors_sidecar(scene: Path, classes: Path) -> None:
    """Beside a stacked composite's class map, which sensor each pixel rests on."""
    from serving.radar.sensors_map import sensor_shares, sensors_path

    shares = sensor_shares(scene, classes)
    if shares is None:  # not a stacked composite
        return
    print(f"wrote {sensors_path(classes).name}: {shares['optical']:.1%} of pixels "
          f"classified with a clear optical observation, {shares['radar alone']:.1%} "
          "from radar alone")
