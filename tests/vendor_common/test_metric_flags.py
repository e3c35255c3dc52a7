"""vendor/common/metric_flags.py, the one start-up check of the metric flags: every vendor refuses a digits-only
metric on other data with one usage message (exit 2) before any training and before its run folder exists;
unknown names, mixed detector spaces and too few samples are refused by flag; the digits pass; a digits metric
never gets the run's detector."""
import numpy as np
import pytest
from PIL import Image

from vendor.common.datasets import load_dataset
from vendor.common.metric_flags import check_digits_only, check_metric_flags, detector_for
from vendor.common.metrics import INCEPTION_URL


def blob_folder(path, n=12, size=32, seed=0):
    """n colour PNGs (random soft discs): data that is not the digits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    path.mkdir()
    for i in range(n):
        img = np.zeros((size, size, 3))
        for _ in range(3):
            cy, cx, r = rng.uniform(4, size - 4), rng.uniform(4, size - 4), rng.uniform(3, 8)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None] * rng.uniform(0, 255, 3)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path / f"{i:03d}.png")
    return path


class Usage(Exception):
    pass


def on_error(message):
    raise Usage(message)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return blob_folder(tmp_path_factory.mktemp("data") / "blobs")


def test_digits_metric_on_other_data_is_refused_naming_flag_and_data(blobs):
    with pytest.raises(Usage) as info:
        check_metric_flags([("--metric", "fid_digits")], load_dataset(str(blobs)), on_error)
    message = str(info.value)
    assert message.startswith("--metric fid_digits: ") and "built-in digits" in message
    assert "use --data digits" in message
    with pytest.raises(Usage, match=r"^--extra_metrics confident_digits: "):
        check_digits_only([("--metric", "fid"), ("--extra_metrics", "confident_digits")],
                          load_dataset(str(blobs)), on_error)


def test_digits_pass_and_need_no_detector():
    digits = load_dataset("digits", resolution=32, ratio=0.1, seed=0)
    assert check_metric_flags([("--metric", "fid_digits"), ("--extra_metrics", "kid_digits")], digits,
                              on_error) is None
    assert detector_for("kid_digits", INCEPTION_URL) is None and detector_for("fid", "x.pt") == "x.pt"


@pytest.mark.parametrize("metrics,num,pattern", [
    ([("--metric", "fidd")], None, r"^--metric: unknown metric 'fidd'"),
    ([("--metric", "fid"), ("--extra_metrics", "pr")], None,
     r"^--extra_metrics: pr needs the vgg16 detector but --metric fid uses inception"),
    ([("--metrics", "fid_digits")], 1, r"^--num_images must be >= 2, got 1"),
])
def test_bad_metric_flags_name_the_flag(metrics, num, pattern):
    digits = load_dataset("digits", resolution=32, ratio=0.1, seed=0)
    with pytest.raises(Usage, match=pattern):
        check_metric_flags(metrics, digits, on_error, num_images=num)


def test_missing_detector_is_refused_with_the_hint(tmp_path):
    digits = load_dataset("digits", resolution=32, ratio=0.1, seed=0)
    with pytest.raises(Usage, match=r"^--detector: .*\(or use --eval_step 0\)$"):
        check_metric_flags([("--metric", "kid")], digits, on_error, detector=str(tmp_path / "missing.pt"),
                           cache_dir=str(tmp_path / "cache"), hint="or use --eval_step 0")


def _sngan(blobs, out):
    from vendor.sngan import train
    return train.main, ["--data", str(blobs), "--ch", "8", "--z_dim", "8", "--batch_size", "4", "--total_steps", "2",
                        "--eval_step", "1", "--metric", "fid_digits", "--device", "cpu", "--logdir", str(out)]


def _progan(blobs, out):
    from vendor.progan import train
    return train.main, ["--data", str(blobs), "--ch", "8", "--z_dim", "8", "--max_res", "8", "--epoch", "1",
                        "--eval_step", "1", "--metric", "kid", "--extra_metrics", "kid_digits", "--device", "cpu",
                        "--logdir", str(out)]


def _autogan(blobs, out):
    from vendor.autogan import train
    return train.main, ["--data", str(blobs), "--gf_dim", "8", "--df_dim", "8", "--latent_dim", "8",
                        "--val_freq", "1", "--metric", "confident_digits", "--device", "cpu", "--logdir", str(out)]


def _fastgan(blobs, out):
    from vendor.fastgan import train
    return train.main, ["--path", str(blobs), "--im_size", "256", "--batch_size", "2", "--ngf", "8", "--ndf", "8",
                        "--nz", "8", "--iter", "2", "--lpips_untrained", "--lpips_width_div", "16",
                        "--metrics", "fid_digits", "--device", "cpu", "--output_path", str(out)]


@pytest.mark.parametrize("vendor,flag,metric,data_flag", [
    (_sngan, "--metric", "fid_digits", "--data"), (_progan, "--extra_metrics", "kid_digits", "--data"),
    (_autogan, "--metric", "confident_digits", "--dataset"), (_fastgan, "--metrics", "fid_digits", "--path")])
def test_every_vendor_refuses_a_digits_metric_on_other_data_at_start_up(blobs, tmp_path, capsys, vendor, flag,
                                                                        metric, data_flag):
    main, argv = vendor(blobs, tmp_path / "run")
    if vendor is _progan:  # kid's Inception file is looked up after the digits check: none is fetched here
        argv += ["--metric_cache", str(tmp_path / "cache")]
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"{flag} {metric}: {metric} is defined only on the built-in digits data" in err
    assert f"use {data_flag} digits" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written, no training


def test_stylegan2_refuses_a_digits_metric_on_other_data_before_the_run_folder(blobs, tmp_path):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "stylegan2_ada"))
    import sg2_helpers
    from click.testing import CliRunner

    train = sg2_helpers.load_script("train")
    flags = [f for f in sg2_helpers.TINY_FLAGS]
    flags[flags.index("--data") + 1] = str(blobs)
    flags[flags.index("--metrics") + 1] = "kid_digits"
    result = CliRunner().invoke(train.main, ["--outdir", str(tmp_path / "runs"), *flags, "--kimg", "0.004"])
    assert result.exit_code == 2, result.output
    assert "--metrics kid_digits: kid_digits is defined only on the built-in digits data" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
