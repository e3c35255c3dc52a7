"""vendor/fastgan/train.py + eval.py as the unmodified baseline: outputs, exact resume, upstream checkpoints both
ways, data sources and error paths. Runs in-process at 256x256, batch 2, with narrow nets (fg_helpers.TINY)."""
import importlib.util
import json
import zipfile
from pathlib import Path

import pytest
import torch

from fg_helpers import TINY, make_folder, run_dir
from vendor.fastgan import eval as fg_eval
from vendor.fastgan import operation as op
from vendor.fastgan import train as fg_train

STATS_KEYS = ("progress/kimg", "progress/tick", "timing/total_sec", "Loss/G", "Loss/D", "Loss/D_rec")


def run(out, name, data, *flags):
    assert fg_train.main([*TINY, "--path", str(data), "--output_path", str(out), "--name", name, *flags]) == 0
    return run_dir(out, name)


def rows(rdir):
    return [json.loads(line) for line in (rdir / "stats.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("fastgan")
    data = make_folder(root / "data")
    full = run(root, "full", data, "--iter", "3", "--snapshot_interval", "2")
    return root, data, full


def test_baseline_outputs(work):
    root, data, full = work
    r = rows(full)
    assert [x["progress/iteration"] for x in r] == [0, 1, 2, 3]       # upstream: iterations 0..iter
    assert [x["progress/kimg"] for x in r] == [0.002, 0.004, 0.006, 0.008]
    for x in r:
        assert all(k in x for k in STATS_KEYS) and not any(k.startswith("sparse/") for k in x)
        assert "UNTRAINED" in x["lpips"]                                 # every output says so
    for name in ("images/0-untrained-lpips.png", "images/rec_3-untrained-lpips.png", "models/0.pth",
                 "models/all_0.pth", "models/2.pth", "models/3.pth", "models/all_3.pth", "snapshot-0.pt",
                 "snapshot-2.pt", "snapshot-3.pt", "last.pt"):
        assert (full / name).is_file(), name
    last = torch.load(full / "last.pt", weights_only=True)
    small = torch.load(full / "models" / "3.pth", weights_only=True)
    every = torch.load(full / "models" / "all_3.pth", weights_only=True)
    assert set(every) >= {"g", "d", "g_ema", "opt_g", "opt_d"} and last["lpips_untrained"] and small["lpips_untrained"]
    assert all(k.startswith("module.") for k in list(small["g"]) + list(every["d"]))   # DataParallel keys
    ema = dict(zip(last["param_names"], last["g_ema"]))
    assert all(torch.equal(small["g"]["module." + k], v) for k, v in ema.items())   # {it}.pth g = EMA weights
    assert all(torch.equal(every["g"]["module." + k], v) for k, v in last["netG"].items())
    assert not all(torch.equal(last["netG"][k], v) for k, v in ema.items())
    # the EMA after 4 G steps from a copy of the initial weights: 0.999-decay of the step-wise weights
    assert last["iteration"] == 3 and last["nimg"] == 8


def test_resume_is_exact(work):
    root, data, full = work
    half = run(root, "half", data, "--iter", "3", "--snapshot_interval", "2", "--resume",
               str(full / "snapshot-2.pt"))
    assert [x["Loss/G"] for x in rows(half)] == [x["Loss/G"] for x in rows(full)[3:]]
    assert [x["Loss/D"] for x in rows(half)] == [x["Loss/D"] for x in rows(full)[3:]]
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (full, half))
    for key in ("netG", "netD"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert all(torch.equal(x, y) for x, y in zip(a["g_ema"], b["g_ema"]))
    assert all(torch.equal(x["exp_avg"], y["exp_avg"]) for x, y in zip(a["opt_g"]["state"].values(),
                                                                        b["opt_g"]["state"].values()))


def test_upstream_checkpoints_load_with_and_without_prefix(work, tmp_path):
    root, data, full = work
    upstream = torch.load(full / "models" / "all_3.pth", weights_only=True)
    plain = dict(upstream, g=op.strip_prefix(upstream["g"]), d=op.strip_prefix(upstream["d"]))
    (tmp_path / "plain").mkdir()
    torch.save(plain, tmp_path / "plain" / "all_3.pth")
    a = run(tmp_path, "a", data, "--iter", "4", "--ckpt", str(full / "models" / "all_3.pth"))
    b = run(tmp_path, "b", data, "--iter", "4", "--ckpt", str(tmp_path / "plain" / "all_3.pth"))
    assert [x["progress/iteration"] for x in rows(a)] == [4]           # continues after the file's iteration
    assert rows(a)[0]["Loss/G"] == rows(b)[0]["Loss/G"]
    # eval.py reads upstream's {it}.pth with or without the prefix, and our own export of a snapshot
    exported = op.export_upstream(str(full / "last.pt"), str(tmp_path / "export"))
    small = torch.load(full / "models" / "3.pth", weights_only=True)
    torch.save({"g": op.strip_prefix(small["g"]), "d": small["d"]}, tmp_path / "3.pth")
    again = torch.load(exported[0], weights_only=True)
    assert all(torch.equal(again["g"][k], v) for k, v in small["g"].items())
    pixels = []
    for name, ckpt in (("p", full / "models" / "3.pth"), ("s", tmp_path / "3.pth"), ("e", Path(exported[0]))):
        assert fg_eval.main(["--ckpt", str(ckpt), "--n_sample", "2", "--batch", "2", "--size", "64",
                             "--dist", str(tmp_path / name), "--device", "cpu"]) == 0
        pixels.append((tmp_path / name / f"eval_{ckpt.stem}" / "img" / "1.png").read_bytes())
    assert pixels[0] == pixels[1] == pixels[2]


def test_g_only_checkpoint_cannot_resume(work, tmp_path, capsys):
    root, data, full = work
    with pytest.raises(SystemExit) as e:
        fg_train.main([*TINY, "--path", str(data), "--output_path", str(tmp_path), "--ckpt",
                       str(full / "models" / "3.pth")])
    assert e.value.code == 2 and "no optimizer state" in capsys.readouterr().err
    assert not (tmp_path / "train_results").exists()


def test_zip_and_digits_with_ratio(tmp_path, work):
    root, data, full = work
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as z:
        for p in sorted(data.iterdir()):
            z.write(p, p.name)
    run(tmp_path, "zip", tmp_path / "set.zip", "--iter", "0")
    d = run(tmp_path, "digits", "digits", "--iter", "0", "--data-ratio", "0.002")
    assert rows(d)[0]["progress/kimg"] == 0.002


def _fails(capsys, tmp_path, *argv):
    with pytest.raises(SystemExit) as e:
        fg_train.main([*TINY, "--output_path", str(tmp_path), "--iter", "1", *argv])
    assert not (tmp_path / "train_results").exists()   # nothing half-written
    return e.value.code, capsys.readouterr().err


def test_bad_data_and_flags_fail_cleanly(tmp_path, capsys, monkeypatch):
    folder = make_folder(tmp_path / "mixed", count=2)
    make_folder(tmp_path / "other", count=1, size=128).joinpath("img0.png").rename(folder / "small.png")
    code, err = _fails(capsys, tmp_path, "--path", str(folder))
    assert code == 2 and "--path" in err and "small.png" in err and "differs" in err
    bad = make_folder(tmp_path / "corrupt", count=1)
    (bad / "broken.png").write_bytes(b"\x89PNG not really")
    code, err = _fails(capsys, tmp_path, "--path", str(bad))
    assert code == 2 and "broken.png" in err and "corrupt" in err
    code, err = _fails(capsys, tmp_path, "--path", str(tmp_path / "missing"))
    assert code == 2 and "no such file" in err
    code, err = _fails(capsys, tmp_path, "--path", "digits", "--data-ratio", "0")
    assert code == 2 and "--data-ratio" in err
    code, err = _fails(capsys, tmp_path, "--path", "digits", "--metrics", "nope")
    assert code == 2 and "--metrics" in err


def test_lpips_weights_are_required_unless_untrained(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    argv = [a for a in TINY if a not in ("--lpips_untrained", "--lpips_width_div", "16")]
    with pytest.raises(SystemExit) as e:
        fg_train.main([*argv, "--path", str(make_folder(tmp_path / "d", 1)), "--output_path", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--lpips_vgg" in err and "--lpips_untrained" in err
    assert not (tmp_path / "train_results").exists()


def test_tensorboard_flag(tmp_path, capsys, work):
    root, data, full = work
    if importlib.util.find_spec("tensorboard") is None:
        code, err = _fails(capsys, tmp_path, "--path", str(data), "--tensorboard")
        assert code == 2 and "pip install tensorboard" in err
    else:
        d = run(tmp_path, "tb", data, "--iter", "0", "--tensorboard")
        assert list(d.glob("events.out.tfevents.*"))  # in the run folder, as every vendor writes them
