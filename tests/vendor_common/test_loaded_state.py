"""Hostile snapshots: every vendor checks what it loads before using it (issue 23, item 5).

Each vendor makes one real snapshot with a tiny run (module fixture); each case changes ONE entry of it (a
NaN weight, a wrong-shaped tensor or optimizer state, a list where a counter or the config belongs, garbage
RNG state, a sampler position far past the data, an order that indexes outside it) and resumes from the
changed file into a fresh folder. Expected: exit 2, one message naming the file and the entry, the fresh
folder never created. The unchanged snapshot resumes (so a refusal is about the change, not the fixture).
"""
import copy
import os
import sys

import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "stylegan2_ada"))
import sg2_helpers  # noqa: E402

from vendor.autogan import train as autogan  # noqa: E402
from vendor.fastgan import eval as fastgan_eval  # noqa: E402
from vendor.fastgan import train as fastgan  # noqa: E402
from vendor.progan import train as progan  # noqa: E402
from vendor.sngan import train as sngan  # noqa: E402

torch.set_num_threads(1)

FLAGS = {  # tiny runs on a folder of 4 images ({DATA}), narrow networks
    "sngan": ["--data", "{DATA}", "--ch", "8", "--z_dim", "8", "--batch_size", "4",
              "--n_dis", "1", "--eval_step", "0", "--sample_step", "0", "--snapshot_steps", "0", "--device", "cpu"],
    "fastgan": ["--path", "{DATA}", "--im_size", "256", "--batch_size", "2", "--ngf", "8",
                "--ndf", "8", "--nz", "16", "--lpips_untrained", "--lpips_width_div", "16", "--device", "cpu",
                "--save_interval", "1000", "--name", "r"],
    "progan": ["--data", "{DATA}", "--ch", "8", "--z_dim", "8", "--max_res", "8",
               "--schedule", "kimg", "--stable_kimg", "0.004", "--fade_kimg", "0.004", "--batch_sizes", "4,4",
               "--sample_step", "0", "--snapshot_steps", "0", "--device", "cpu"],
    "autogan": ["--data", "{DATA}", "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "8",
                "--max_iter", "2", "-gen_bs", "4", "-dis_bs", "4", "--n_critic", "1", "--val_freq", "0",
                "--device", "cpu"],
}
OUT_FLAG = {"sngan": "--logdir", "progan": "--logdir", "autogan": "--logdir", "fastgan": "--output_path"}
RESUME_FLAG = {"sngan": "--resume", "progan": "--resume", "autogan": "--load_path", "fastgan": "--resume"}
LENGTH = {"sngan": ["--total_steps", "4"], "progan": [], "autogan": ["--max_iter", "4"], "fastgan": ["--iter", "0"]}
MAIN = {"sngan": sngan.main, "fastgan": fastgan.main, "progan": progan.main, "autogan": autogan.main}


def flags(vendor, data):
    return [str(data) if a == "{DATA}" else a for a in FLAGS[vendor]]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder of 4 small RGB images (fast to load at any size)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    gen = torch.Generator().manual_seed(0)
    for i in range(4):
        pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=gen).numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def snapshot_file(vendor, out):
    return {"sngan": out / "last.pt", "progan": out / "last.pt", "autogan": out / "Model" / "checkpoint.pth",
            "fastgan": out / "train_results" / "r" / "last.pt"}[vendor]


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory, data):
    """{vendor: (path of a real snapshot, its loaded dict)} from one tiny run per vendor."""
    made = {}
    for vendor in MAIN:
        out = tmp_path_factory.mktemp(vendor)
        half = {"sngan": ["--total_steps", "2"], "progan": [], "autogan": [], "fastgan": ["--iter", "0"]}[vendor]
        assert MAIN[vendor]([*flags(vendor, data), *half, OUT_FLAG[vendor], str(out)]) == 0
        path = snapshot_file(vendor, out)
        made[vendor] = (path, torch.load(path, weights_only=True))
    return made


def first_float(state_dict):
    return next(k for k, v in state_dict.items() if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 1)


def set_nan(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def tamper_net(key):
    def change(s):
        s[key][first_float(s[key])] = set_nan(s[key][first_float(s[key])])
        return f"{key}.{first_float(s[key])}"
    return change


def tamper_shape(key):
    def change(s):
        name = first_float(s[key])
        s[key][name] = s[key][name][:1]
        return f"{key}.{name}"
    return change


def tamper_optimizer(key):
    def change(s):
        pid = next(iter(s[key]["state"]))
        s[key]["state"][pid]["exp_avg"] = torch.zeros(3)
        return f"{key}.state.{pid}.exp_avg"
    return change


def replace(path, value):
    def change(s):
        target = s
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value
        return ".".join(path)
    return change


def garbage_rng(t):
    return torch.randint(0, 256, t.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def out_of_range_order(order):
    order = order.clone()
    order[0] = 10 ** 6
    return order


NAMES = {  # vendor -> (G weights, G optimizer, a counter, RNG entry, sampler entry or None)
    "sngan": ("net_G", "optim_G", ("step",), ("rng", "torch"), ("batches",)),
    "fastgan": ("netG", "opt_g", ("iteration",), ("rng", "torch"), ("batches",)),
    "progan": ("net_G", "optim_G", ("nimg",), ("rng", "torch"), ("batches",)),
    "autogan": ("gen_state_dict", "gen_optimizer", ("counters", "epoch"), ("rng", "torch"), None),
}


def cases():
    out = []
    for vendor, (net, opt, count, rng, sampler) in NAMES.items():
        out += [(vendor, "nan weight", tamper_net(net)), (vendor, "wrong shape", tamper_shape(net)),
                (vendor, "optimizer shape", tamper_optimizer(opt)),
                (vendor, "counter is a list", replace(count, [1, 2])),
                (vendor, "config is a list", replace(("config",), ["im_size", 256])),
                (vendor, "garbage rng", replace(rng, garbage_rng)),
                (vendor, "rng wrong size", replace(rng, torch.zeros(7, dtype=torch.uint8)))]
        if sampler:
            out += [(vendor, "sampler position 1e6", replace(sampler + ("position",), 10 ** 6)),
                    (vendor, "sampler order outside the data", replace(sampler + ("order",), out_of_range_order))]
    out += [("autogan", "scheduler is a list", replace(("gen_scheduler",), [1])),
            ("autogan", "sampler generator garbage", replace(("batches", "generator"), garbage_rng)),
            ("progan", "stage past the plan", replace(("stage",), 7)),
            ("sngan", "nan loss-scale in the optimizer", replace(("optim_G", "param_groups"),
                                                                 lambda g: [dict(g[0], lr=float("nan"))]))]
    return out


CASES = cases()


def resume(vendor, path, out, capsys, data):
    argv = [*flags(vendor, data), *LENGTH[vendor], OUT_FLAG[vendor], str(out), RESUME_FLAG[vendor], str(path)]
    with pytest.raises(SystemExit) as exit_info:
        MAIN[vendor](argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize("vendor, what, change", CASES, ids=[f"{v}:{w}" for v, w, _ in CASES])
def test_hostile_snapshot_is_refused_naming_file_and_entry(snapshots, data, tmp_path, capsys, vendor, what, change):
    source, state = snapshots[vendor]
    state = copy.deepcopy(state)
    entry = change(state)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    out = tmp_path / "out"
    code, output = resume(vendor, bad, out, capsys, data)
    assert code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if ": error:" in line]
    assert len(errors) == 1, output
    assert str(bad) in errors[0], output
    assert entry.split(".")[0] in errors[0] or entry in errors[0], (entry, output)
    assert not out.exists()


@pytest.mark.parametrize("vendor", list(MAIN))
def test_the_unchanged_snapshot_resumes(snapshots, data, tmp_path, vendor):
    source, state = snapshots[vendor]
    copy_path = tmp_path / "copy.pt"
    torch.save(state, copy_path)
    out = tmp_path / "out"
    assert MAIN[vendor]([*flags(vendor, data), *LENGTH[vendor], OUT_FLAG[vendor], str(out), RESUME_FLAG[vendor],
                         str(copy_path)]) == 0


# ---------------------------------------------------------------------------------------------------------------
# FastGAN eval.py: upstream's models/{it}.pth with a scalar or wrong-shaped weight; a bad --path before any image

def test_fastgan_eval_refuses_scalar_and_wrong_shaped_weights_and_checks_path_first(snapshots, tmp_path, capsys):
    source, state = snapshots["fastgan"]
    upstream = {"g": {f"module.{k}": v for k, v in fastgan_eval.op.strip_prefix(state["netG"]).items()}}
    name = [k for k, v in state["netG"].items() if v.is_floating_point() and v.dim() > 1][-1]  # not one nz/ngf
    for label, value in (("scalar", torch.tensor(0.5)), ("shape", state["netG"][name][:1]),
                         ("nan", set_nan(state["netG"][name]))):
        bad = copy.deepcopy(upstream)
        bad["g"][f"module.{name}"] = value
        path = tmp_path / label / "1.pth"
        path.parent.mkdir()
        torch.save(bad, path)
        dist = tmp_path / label / "dist"
        with pytest.raises(SystemExit) as exit_info:
            fastgan_eval.main(["--ckpt", str(path), "--dist", str(dist), "--n_sample", "2", "--device", "cpu"])
        output = capsys.readouterr().err
        assert exit_info.value.code == 2 and str(path) in output and name in output, output
        assert not dist.exists()
    # a valid checkpoint with a --path that cannot be read: refused before the first image
    good = tmp_path / "good" / "1.pth"
    good.parent.mkdir()
    torch.save(upstream, good)
    dist = tmp_path / "good" / "dist"
    with pytest.raises(SystemExit) as exit_info:
        fastgan_eval.main(["--ckpt", str(good), "--dist", str(dist), "--n_sample", "2", "--device", "cpu",
                           "--metric", "fid_digits", "--path", str(tmp_path / "no-such-images")])
    assert exit_info.value.code == 2 and "--path" in capsys.readouterr().err
    assert not dist.exists()
    assert fastgan_eval.main(["--ckpt", str(good), "--dist", str(dist), "--n_sample", "2", "--device", "cpu"]) == 0
    assert len(os.listdir(dist / "eval_1" / "img")) == 2


# ---------------------------------------------------------------------------------------------------------------
# StyleGAN2-ADA: NaN network kwargs (generate.py, calc_metrics.py) and hostile training snapshots (train.py)

@pytest.fixture(scope="module")
def sg2_snapshot(tmp_path_factory):
    train = sg2_helpers.load_script("train")
    out = tmp_path_factory.mktemp("sg2")
    result = CliRunner().invoke(train.main, ["--outdir", str(out), *sg2_helpers.TINY_FLAGS, "--kimg", "0.008",
                                             "--tick", "0.004", "--snap", "1", "--img-snap", "0"])
    assert result.exit_code == 0, result.output
    paths = sorted(out.glob("*/network-snapshot-*.pt"))
    return paths[-1], torch.load(paths[-1], weights_only=True)


SG2_CASES = [
    ("G_kwargs NaN", replace(("G_kwargs", "mapping_kwargs", "lr_multiplier"), float("nan")),
     "G_kwargs.mapping_kwargs.lr_multiplier"),
    ("common_kwargs NaN", replace(("G_kwargs", "w_dim"), float("inf")), "w_dim"),
    ("G_ema NaN weight", lambda s: s["G_ema"].__setitem__("mapping.fc0.weight", set_nan(s["G_ema"]["mapping.fc0.weight"])),
     "mapping.fc0.weight"),
]


@pytest.mark.parametrize("what, change, entry", SG2_CASES, ids=[c[0] for c in SG2_CASES])
def test_sg2_tools_refuse_nan_network_kwargs(sg2_snapshot, tmp_path, what, change, entry):
    source, state = sg2_snapshot
    state = copy.deepcopy(state)
    change(state)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    generate = sg2_helpers.load_script("generate")
    out = tmp_path / "images"
    result = CliRunner().invoke(generate.generate_cli, ["--network", str(bad), "--seeds", "0", "--outdir", str(out),
                                                        "--device", "cpu"])
    assert result.exit_code == 2 and str(bad) in result.output and entry in result.output, result.output
    assert not out.exists()
    calc = sg2_helpers.load_script("calc_metrics")
    result = CliRunner().invoke(calc.calc_metrics, ["--network", str(bad), "--metrics", "none", "--device", "cpu"])
    assert result.exit_code == 2 and str(bad) in result.output and entry in result.output, result.output


SG2_RESUME_CASES = [
    ("batch_idx 1e6", replace(("batch_idx",), 10 ** 6), "batch_idx"),
    ("cur_nimg a list", replace(("cur_nimg",), [1]), "cur_nimg"),
    ("G_opt wrong shape", tamper_optimizer("G_opt"), "G_opt.state."),
    ("rng garbage", replace(("rng", "torch"), garbage_rng), "rng.torch"),
    ("numpy keys garbage", replace(("rng", "numpy_keys"), torch.zeros(3, dtype=torch.int64)), "rng.numpy_keys"),
    ("pl_mean NaN", replace(("pl_mean",), torch.tensor(float("nan"))), "pl_mean"),
    ("stats a list", replace(("stats_collector",), [1]), "stats_collector"),
    ("G_kwargs NaN", replace(("G_kwargs", "mapping_kwargs", "lr_multiplier"), float("nan")), "lr_multiplier"),
]


@pytest.mark.parametrize("what, change, entry", SG2_RESUME_CASES, ids=[c[0] for c in SG2_RESUME_CASES])
def test_sg2_train_refuses_hostile_snapshots_before_the_run_folder(sg2_snapshot, tmp_path, what, change, entry):
    source, state = sg2_snapshot
    state = copy.deepcopy(state)
    change(state)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    train = sg2_helpers.load_script("train")
    out = tmp_path / "runs"
    result = CliRunner().invoke(train.main, ["--outdir", str(out), *sg2_helpers.TINY_FLAGS, "--kimg", "0.016",
                                             "--resume", str(bad)])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert str(bad) in errors[0] and entry in errors[0], result.output
    assert not out.exists()
