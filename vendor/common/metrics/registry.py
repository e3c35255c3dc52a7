"""Metric names: what each one computes, in which feature space, with how many samples.

Short names (`fid`, `kid`, `is`, `pr`, `fid_digits`, `kid_digits`) return short result keys.
StyleGAN2-ADA's names (`fid50k_full`, ...) map onto the same computations with upstream's sample
counts and return upstream's result keys, so a vendor tree can write `metric-<name>.jsonl` lines
that read like upstream's.
"""
import dataclasses

from .errors import MetricError

STANDARD_NUM_GEN = 50000


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    kind: str                      # 'fid' | 'kid' | 'is' | 'pr' | 'confident'
    space: str                     # 'inception' | 'vgg16' | 'digits'
    result_keys: tuple[str, ...]   # names of the returned values, in the order the formula yields them
    num_gen: int | None            # None: as many generated images as the dataset has
    max_real: int | None = None    # None: the whole dataset (upstream's "full")
    num_subsets: int = 100         # KID
    max_subset_size: int = 1000    # KID
    num_splits: int = 10           # IS
    nhood_size: int = 3            # precision / recall

    @property
    def is_standard(self) -> bool:
        return self.space != "digits"


METRICS: dict[str, MetricSpec] = {
    "fid": MetricSpec("fid", "inception", ("fid",), STANDARD_NUM_GEN),
    "kid": MetricSpec("kid", "inception", ("kid",), STANDARD_NUM_GEN, max_real=1000000),
    "is": MetricSpec("is", "inception", ("is_mean", "is_std"), STANDARD_NUM_GEN),
    "pr": MetricSpec("pr", "vgg16", ("precision", "recall"), STANDARD_NUM_GEN, max_real=200000),
    # Non-standard: features of a small digits classifier, not Inception; not comparable with papers.
    "fid_digits": MetricSpec("fid", "digits", ("fid_digits",), None),
    "kid_digits": MetricSpec("kid", "digits", ("kid_digits",), None),
    # Recognisability: share of generated images the digits classifier puts in one class with p >= 0.9
    # (higher is better; real digits ~1, noise ~0).
    "confident_digits": MetricSpec("confident", "digits", ("confident_digits",), 500),
}

# StyleGAN2-ADA metric names (metrics/metric_main.py) -> the same computation with upstream's counts.
STYLEGAN2_METRICS: dict[str, MetricSpec] = {
    "fid50k_full": dataclasses.replace(METRICS["fid"], result_keys=("fid50k_full",)),
    "kid50k_full": dataclasses.replace(METRICS["kid"], result_keys=("kid50k_full",)),
    "is50k": dataclasses.replace(METRICS["is"], result_keys=("is50k_mean", "is50k_std")),
    "pr50k3_full": dataclasses.replace(METRICS["pr"], result_keys=("pr50k3_full_precision", "pr50k3_full_recall")),
    # upstream's non-"full" variants: at most 50k reals
    "fid50k": dataclasses.replace(METRICS["fid"], result_keys=("fid50k",), max_real=50000),
    "kid50k": dataclasses.replace(METRICS["kid"], result_keys=("kid50k",), max_real=50000),
    "pr50k3": dataclasses.replace(METRICS["pr"], result_keys=("pr50k3_precision", "pr50k3_recall"), max_real=50000),
}


def list_metrics() -> list[str]:
    return sorted(METRICS) + sorted(STYLEGAN2_METRICS)


def get_metric_spec(name: str) -> MetricSpec:
    spec = METRICS.get(name) or STYLEGAN2_METRICS.get(name)
    if spec is None:
        raise MetricError(f"unknown metric {name!r}; known metrics: {', '.join(list_metrics())}")
    return spec
