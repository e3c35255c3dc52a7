"""What SNGAN, ProGAN, AutoGAN and FastGAN leave in a run folder besides stats.jsonl (issue 21, item 1): flags.jsonl with
the resolved flags of the start, a progress line with an ETA on every tick, and, when the tensorboard package is
installed (the `tensorboard` extra; CI's test extra installs it), TensorBoard events holding every number of every
stats row at step = images shown (the reference: the stats.jsonl rows, read back independently)."""
import importlib.util
import json
from pathlib import Path

import pytest

VENDORS = {  # vendor: (module, argv without the output flag, output flag, run folder below the output)
    "sngan": ("vendor.sngan.train", ["--data", "digits", "--data-ratio", "0.05", "--ch", "8", "--z_dim", "8",
                                     "--batch_size", "4", "--n_dis", "1", "--total_steps", "4", "--tick_steps", "2",
                                     "--eval_step", "0", "--sample_step", "0", "--device", "cpu"], "--logdir", ""),
    "progan": ("vendor.progan.train", ["--data", "digits", "--data-ratio", "0.05", "--ch", "8", "--z_dim", "8",
                                       "--max_res", "8", "--epoch", "1", "--batch_sizes", "16,16", "--tick_steps", "4",
                                       "--sample_step", "0", "--device", "cpu"], "--logdir", ""),
    "autogan": ("vendor.autogan.train", ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8", "--df_dim",
                                         "8", "--latent_dim", "8", "-gen_bs", "6", "-dis_bs", "5", "--n_critic", "2",
                                         "--print_freq", "2", "--val_freq", "0", "--max_iter", "3", "--device", "cpu"],
                "--logdir", ""),
    "fastgan": ("vendor.fastgan.train", ["--path", "digits", "--data-ratio", "0.01", "--im_size", "256",
                                         "--batch_size", "2", "--ngf", "8", "--ndf", "8", "--nz", "8",
                                         "--lpips_untrained", "--lpips_width_div", "16", "--iter", "1", "--tick", "1",
                                         "--device", "cpu", "--name", "run"], "--output_path", "train_results/run"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{vendor: (run folder, stdout)} of one tiny run each, in this process."""
    import contextlib
    import importlib
    import io

    out = {}
    for vendor, (module, argv, flag, below) in VENDORS.items():
        base = tmp_path_factory.mktemp(vendor)
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            assert importlib.import_module(module).main([*argv, flag, str(base)]) == 0
        out[vendor] = (base / below if below else base, text.getvalue())
    return out


def stats_rows(run):
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_flags_record_and_eta_on_every_progress_line(runs, vendor):
    run, stdout = runs[vendor]
    records = [json.loads(line) for line in (run / "flags.jsonl").read_text().splitlines()]
    assert len(records) == 1
    flags = records[0]["flags"]
    resolved = {"sngan": ("metric", "fid_digits"), "progan": ("metric", "fid_digits"),  # from --metric's None
                "autogan": ("metric", "fid_digits"), "fastgan": ("snapshot_interval", 5000)}[vendor]
    assert flags[resolved[0]] == resolved[1]
    assert flags["device"] == "cpu"
    ticks = [line for line in stdout.splitlines() if line.startswith("tick ")]
    assert len(ticks) == len(stats_rows(run)) >= 2
    assert all("  eta " in line for line in ticks), ticks
    assert ticks[-1].split("  eta ")[1].startswith("0s")  # the last tick ends the run


@pytest.mark.parametrize("vendor", list(VENDORS))
def test_tensorboard_events_mirror_every_stats_number(runs, vendor):
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("the tensorboard package is not installed (pip install -e .[tensorboard]): no events written")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = runs[vendor]
    assert list(run.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    rows = stats_rows(run)
    numeric = {k for row in rows for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert {"Loss/G", "Loss/D", "progress/kimg"} <= numeric <= set(events.Tags()["scalars"])
    for key in numeric:
        got = [(e.step, e.value) for e in events.Scalars(key)]
        want = [(round(r["progress/kimg"] * 1000), r[key]) for r in rows if key in r]
        assert [s for s, _ in got] == [s for s, _ in want], key
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6, abs=1e-6), key
