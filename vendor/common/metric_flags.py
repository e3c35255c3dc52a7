"""Start-up checks of the metric flags every vendor training script takes (one place for all of them).

A metric that cannot run must stop the run before any training time is spent, with one usage message
naming the flag, not with a traceback at the first evaluation hours later:
  * an unknown metric name;
  * standard metrics that need detectors of different feature spaces in one run (one detector file per run);
  * a missing detector file (fetched into the cache, or found there, now);
  * a digits-only metric (`fid_digits`, `kid_digits`, `confident_digits`: features of the digits classifier)
    asked for on data that is not the built-in digits (its numbers would mean nothing there);
  * a sample count below 2.

`on_error(message)` is the CLI's usage error (argparse's `parser.error`, exit 2); it must not return. The
metrics package is imported only here, inside the function, so a run without metrics never loads it.
"""
from __future__ import annotations

from typing import Callable, Iterable

__all__ = ["check_metric_flags", "check_digits_only", "detector_for"]


def _fail(on_error: Callable[[str], object], message: str):
    on_error(message)
    raise SystemExit(2)  # on_error must not return; if it does, nothing goes on with a bad metric


def check_digits_only(metrics: Iterable[tuple[str, str]], dataset, on_error, data_flag: str = "--data") -> None:
    """Refuse every digits-space metric in `metrics` ((flag, name) pairs) unless `dataset` is the built-in
    digits (vendor.common.metrics.check_digits_reference decides, by content)."""
    from vendor.common.metrics import MetricError, check_digits_reference, get_metric_spec

    for flag, name in metrics:
        try:
            spec = get_metric_spec(name)
        except MetricError:
            continue  # unknown names are check_metric_flags' message
        if spec.space != "digits":
            continue
        try:
            check_digits_reference(name, dataset)
        except MetricError as error:
            _fail(on_error, f"{flag} {name}: {error}; use {data_flag} digits, or a standard metric such as fid")


def check_metric_flags(metrics: Iterable[tuple[str, str]], dataset, on_error, *, detector: str | None = None,
                       detector_flag: str = "--detector", cache_dir: str | None = None,
                       num_images: int | None = None, num_images_flag: str = "--num_images",
                       data_flag: str = "--data", hint: str = "") -> str | None:
    """Check the metrics a run will compute, given as (flag, name) pairs (e.g. [("--metric", "fid"),
    ("--extra_metrics", "kid")]), against the training `dataset`. Returns the detector the run should use:
    `detector` as given, or the default file of the metrics' space when a standard metric is asked for and
    none was given (None when only digits metrics are asked for)."""
    from vendor.common.metrics import INCEPTION_URL, VGG16_URL, MetricError, get_metric_spec

    metrics = list(metrics)
    specs = []
    for flag, name in metrics:
        try:
            specs.append((flag, name, get_metric_spec(name)))
        except MetricError as error:
            _fail(on_error, f"{flag}: {error}")
    standard = [(flag, name, spec) for flag, name, spec in specs if spec.is_standard]
    if standard:
        first_flag, first_name, first = standard[0]
        for flag, name, spec in standard[1:]:
            if spec.space != first.space:
                _fail(on_error, f"{flag}: {name} needs the {spec.space} detector but {first_flag} {first_name} "
                                f"uses {first.space}; one detector per run: run them separately")
    if num_images is not None and num_images < 2:
        _fail(on_error, f"{num_images_flag} must be >= 2, got {num_images}")
    check_digits_only(metrics, dataset, on_error, data_flag)
    if not standard:
        return detector
    if detector is None:
        detector = INCEPTION_URL if standard[0][2].space == "inception" else VGG16_URL
    from vendor.common.metrics.detectors import resolve_detector_file

    try:  # fetch (or find in the cache) the detector now, before any training time is spent
        resolve_detector_file(detector, cache_dir)
    except MetricError as error:
        _fail(on_error, f"{detector_flag}: {error}" + (f" ({hint})" if hint else ""))
    return detector


def detector_for(name: str, detector: str | None) -> str | None:
    """The detector to pass to compute_metric for metric `name`: the run's detector for a standard metric,
    None for a digits metric (it uses the built-in classifier and refuses a detector)."""
    from vendor.common.metrics import get_metric_spec

    return detector if get_metric_spec(name).is_standard else None
