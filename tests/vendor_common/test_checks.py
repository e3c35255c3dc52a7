"""vendor.common.checks (what a loaded checkpoint holds) and vendor.common.flags (flag values), unit level.

Each check is shown to accept what the live objects themselves produce (their own state_dicts) and to refuse
one broken entry at a time, naming it.
"""
import math
import os

import pytest
import torch

from vendor.common import checks, flags
from vendor.common.checks import CheckpointError


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def trained_adam(net):
    """An Adam holding per-parameter state as after a step (set directly: a first real step imports torch's
    compiler stack, seconds for nothing here)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    for p in net.parameters():
        opt.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.randn_like(p), "exp_avg_sq": torch.rand_like(p)}
    return opt


def refused(fn, *args, entry, **kwargs):
    with pytest.raises(CheckpointError) as info:
        fn(*args, **kwargs)
    assert entry in str(info.value), str(info.value)
    return str(info.value)


def test_module_state_accepts_its_own_and_names_the_broken_entry():
    net = small_net()
    checks.module_state(net.state_dict(), net, "G")
    bad = dict(net.state_dict())
    bad["0.weight"] = bad["0.weight"].clone()
    bad["0.weight"][1, 2] = math.nan
    assert "1 non-finite" in refused(checks.module_state, bad, net, "G", entry="G.0.weight")
    bad = dict(net.state_dict(), **{"2.bias": torch.zeros(())})  # a scalar where a vector belongs
    refused(checks.module_state, bad, net, "G", entry="G.2.bias")
    bad = dict(net.state_dict(), **{"1.num_batches_tracked": torch.tensor(1.5)})  # float where an int belongs
    refused(checks.module_state, bad, net, "G", entry="G.1.num_batches_tracked")
    refused(checks.module_state, dict(net.state_dict(), extra=torch.zeros(1)), net, "G", entry="G.extra")
    checks.module_state(dict(net.state_dict(), extra=torch.zeros(1)), net, "G", extra_ok=True)
    refused(checks.module_state, [1, 2], net, "G", entry="'G'")


def test_tensor_list_like_counts_and_shapes():
    net = small_net()
    params = list(net.parameters())
    checks.tensor_list_like([p.detach().clone() for p in params], params, "g_ema")
    refused(checks.tensor_list_like, [p.detach() for p in params[:-1]], params, "g_ema", entry="g_ema")
    broken = [p.detach().clone() for p in params]
    broken[2] = torch.tensor(0.5)  # a scalar would broadcast silently into every element
    refused(checks.tensor_list_like, broken, params, "g_ema", entry="g_ema[2]")


def test_optimizer_state_against_the_live_optimizer():
    net = small_net()
    opt = trained_adam(net)
    saved = opt.state_dict()
    checks.optimizer_state(saved, opt, "opt")
    checks.optimizer_state(torch.optim.Adam(net.parameters()).state_dict(), opt, "opt")  # fresh: empty state
    first = next(iter(saved["state"]))
    bad = {"state": {**saved["state"], first: {**saved["state"][first], "exp_avg": torch.zeros(7)}},
           "param_groups": saved["param_groups"]}
    refused(checks.optimizer_state, bad, opt, "opt", entry=f"opt.state.{first}.exp_avg")
    bad = {"state": {**saved["state"], first: {**saved["state"][first], "step": torch.tensor(-1.0)}},
           "param_groups": saved["param_groups"]}
    refused(checks.optimizer_state, bad, opt, "opt", entry=f"opt.state.{first}.step")
    bad = {"state": saved["state"], "param_groups": [dict(saved["param_groups"][0], lr=math.inf)]}
    refused(checks.optimizer_state, bad, opt, "opt", entry="opt.param_groups[0].lr")
    bad = {"state": saved["state"], "param_groups": [dict(saved["param_groups"][0], betas=[0.0])]}
    refused(checks.optimizer_state, bad, opt, "opt", entry="opt.param_groups[0].betas")
    bad = {"state": saved["state"], "param_groups": [dict(saved["param_groups"][0], params=[0, 1])]}
    refused(checks.optimizer_state, bad, opt, "opt", entry="opt.param_groups[0].params")
    bad = {"state": {99: saved["state"][first]}, "param_groups": saved["param_groups"]}
    refused(checks.optimizer_state, bad, opt, "opt", entry="opt.state.99")
    refused(checks.optimizer_state, {"state": {}}, opt, "opt", entry="opt.param_groups")


def test_scheduler_state():
    net = small_net()
    opt = torch.optim.Adam(net.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / 10)
    with pytest.warns(UserWarning):  # stepped without an optimizer step: torch warns, the state is what counts
        sched.step()
    checks.scheduler_state(sched.state_dict(), sched, "sched")
    refused(checks.scheduler_state, dict(sched.state_dict(), last_epoch=[1]), sched, "sched",
            entry="sched.last_epoch")
    refused(checks.scheduler_state, dict(sched.state_dict(), base_lrs=[math.nan]), sched, "sched",
            entry="sched.base_lrs[0]")
    refused(checks.scheduler_state, [1], sched, "sched", entry="sched")


def test_rng_and_sampler_states():
    checks.rng_state({"torch": torch.get_rng_state()}, "rng")
    garbage = torch.randint(0, 256, torch.get_rng_state().shape, dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(3))
    before = torch.get_rng_state()
    refused(checks.rng_state, {"torch": garbage}, "rng", entry="rng.torch")
    assert torch.equal(torch.get_rng_state(), before)  # the check never touches the live stream
    refused(checks.rng_state, {"torch": torch.zeros(4, dtype=torch.uint8)}, "rng", entry="rng.torch")
    refused(checks.rng_state, {"torch": before.float()}, "rng", entry="rng.torch")
    refused(checks.rng_state, {}, "rng", entry="rng.torch")
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(6, generator=gen)
    good = {"generator": gen.get_state(), "order": order, "position": 6}
    checks.permutation_sampler(good, 6, "batches")
    refused(checks.permutation_sampler, dict(good, position=10 ** 6), 6, "batches", entry="batches.position")
    refused(checks.permutation_sampler, dict(good, position=-1), 6, "batches", entry="batches.position")
    refused(checks.permutation_sampler, dict(good, order=torch.arange(7)), 6, "batches", entry="batches.order")
    refused(checks.permutation_sampler, dict(good, order=torch.tensor([0, 1, 2, 3, 4, 4])), 6, "batches",
            entry="batches.order")
    refused(checks.permutation_sampler, dict(good, order=order.float()), 6, "batches", entry="batches.order")
    refused(checks.permutation_sampler, dict(good, generator=garbage), 6, "batches", entry="batches.generator")


def test_counters_numbers_and_plain_data():
    assert checks.counter(7, "step") == 7 and checks.counter(torch.tensor(7), "step") == 7
    for bad in ([1], "7", True, -1, 1.5, math.nan, 10 ** 16):
        refused(checks.counter, bad, "step", entry="step")
    assert checks.seconds(2.5, "total_sec") == 2.5
    refused(checks.seconds, -1.0, "total_sec", entry="total_sec")
    refused(checks.number, math.inf, "best", entry="best")
    checks.plain_finite({"a": [1, 2.5, {"b": None, "c": "x"}]}, "kw")
    refused(checks.plain_finite, {"a": [1, {"b": math.nan}]}, "kw", entry="kw.a[1].b")
    refused(checks.plain_finite, {"a": torch.zeros(1)}, "kw", entry="kw.a")


# ------------------------------------------------------------------------------------------------------------
# flags

def test_number_flags():
    assert flags.finite_positive(2e-4, "--lr") == 2e-4
    for value in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(flags.FlagError, match="--lr"):
            flags.finite_positive(value, "--lr")
    assert flags.finite_nonneg(0.0, "--drift") == 0.0
    for value in (-1e-9, math.nan, math.inf):
        with pytest.raises(flags.FlagError, match="--drift"):
            flags.finite_nonneg(value, "--drift")
    assert flags.unit_interval(0.0, "--beta1") == 0.0 and flags.unit_interval(0.999, "--beta1") == 0.999
    assert flags.unit_interval(1.0, "--p", high_closed=True) == 1.0
    for value in (1.0, -0.1, math.nan):
        with pytest.raises(flags.FlagError, match="--beta1"):
            flags.unit_interval(value, "--beta1")


def test_seed_range_is_numpys():
    import numpy as np

    for value in (0, 2 ** 32 - 1):
        assert flags.seed(value, "--seed") == value
        np.random.RandomState(value)  # the limit is exactly what numpy accepts
    for value in (-1, 2 ** 32, True, 1.0):
        with pytest.raises(flags.FlagError, match="--seed"):
            flags.seed(value, "--seed")
    with pytest.raises(ValueError):
        np.random.RandomState(2 ** 32)


def test_out_dir(tmp_path, monkeypatch):
    assert flags.out_dir(tmp_path / "new" / "run", "--logdir")
    assert sorted(os.listdir(tmp_path)) == []  # nothing created, probe removed
    file = tmp_path / "file"
    file.write_text("x")
    for bad in (file, file / "run", "/proc/run", "/sys/run", ""):
        with pytest.raises(flags.FlagError, match="--logdir"):
            flags.out_dir(bad, "--logdir")
    # a folder this process may not write (checked through os.access, as a read-only mount answers)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(tmp_path) else
                        real_access(path, mode))
    with pytest.raises(flags.FlagError, match="not writable"):
        flags.out_dir(tmp_path / "run", "--logdir")
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"), reason="needs root and setpriv")
def test_out_dir_read_only_folder_as_another_user(tmp_path):
    """A real read-only folder: an unprivileged user runs the check (root may write anywhere)."""
    import subprocess
    import sys

    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    os.chmod(tmp_path, 0o755)
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from vendor.common import flags\n"
            "try:\n    flags.out_dir(sys.argv[1], '--logdir')\nexcept flags.FlagError as e:\n    print(e); sys.exit(2)")
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    proc = subprocess.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                           "-S", "-c", code, str(folder / "run"), root], capture_output=True, text=True)
    if "Permission denied" in proc.stderr and "python" in proc.stderr.lower():
        pytest.skip("the interpreter is not readable by an unprivileged user here")
    assert proc.returncode == 2 and "--logdir" in proc.stdout, proc.stdout + proc.stderr
    assert os.listdir(folder) == []


def test_device():
    assert flags.device("cpu", "--device").type == "cpu"
    for bad in ("gpu", "cuda:99", "tpu"):
        with pytest.raises(flags.FlagError, match="--device"):
            flags.device(bad, "--device")
    if not torch.cuda.is_available():
        with pytest.raises(flags.FlagError, match="no CUDA"):
            flags.device("cuda", "--device")


def test_cached_digits_classifier_with_a_nan_weight_is_refused(tmp_path):
    from vendor.common.metrics import MetricError
    from vendor.common.metrics import digits_detector as dd

    state = dd.DigitsClassifier().state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = math.nan
    path = dd.classifier_cache_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state}, path)
    with pytest.raises(MetricError) as info:
        dd.load_digits_detector(tmp_path, verbose=False)
    assert str(path) in str(info.value) and name in str(info.value)
