"""Kill runs with SIGKILL at random moments, resume them, and check what is left (issue 23, item 4).

    python bench/kill_resume.py                       # all five vendors, 10 kills each, CPU
    python bench/kill_resume.py --vendors sngan,progan --kills 12 --seed 1 --out bench/results/kill-resume-cpu.md

Per vendor (unmodified tree, tiny CPU config). Each run is a child forked from this process after the vendor's
modules are imported, running the vendor's main(argv) through the scripts' entry wrapper exactly as
`python vendor/<v>/train.py ARGS` does (a fresh interpreter per run would spend most of the time importing torch);
the child is killed with SIGKILL like any process.
1. an uninterrupted reference run: its wall time from the first progress line to exit, its stats rows, its
   final snapshot;
2. a chain in one run folder: start the run, wait for its first progress line, sleep a random time in
   [0, reference training time] (every second kill then waits on until a write is under way: a temporary
   file exists), SIGKILL; check every snapshot file on disk loads (nothing half-written under a
   final name); resume from the newest snapshot (a run killed before its first snapshot starts afresh in a new
   folder: there is nothing to resume); repeat until --kills kills, then let the last resume finish;
3. when a chain that was killed and resumed finishes: no temporary file anywhere in its run folder(s), no stats
   row logged twice, the rows equal the reference's (machine-dependent timing / memory entries aside), and the
   final snapshot's tensors equal the reference's bit for bit (these five resume exactly on the CPU). A run that
   finishes before its kill lands ends its chain; the next kill starts a new one.
StyleGAN2-ADA resumes into a new numbered folder (as upstream): its history is the rows of each folder up to the
tick the next folder resumed from, then the last folder's rows.

Writes a Markdown report (command, torch version, date, per-vendor numbers) to --out, or prints it.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
from vendor.common.runlog import SnapshotError, load_snapshot, read_jsonl  # noqa: E402

MACHINE_KEYS = ("timing/", "resources/", "Timing/", "Resources/", "timestamp")
TEMPORARY = ("**/.*.tmp", "**/.tmp-*.pt")
SNAPSHOT_NAMES = ("*.pt", "*.pth")


def _images(folder):
    """Four smooth 256x256 RGB images for FastGAN (its smallest size)."""
    import numpy as np
    from PIL import Image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(4):
        base = rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)
        Image.fromarray(base).resize((256, 256), Image.BILINEAR).save(os.path.join(folder, f"img{i}.png"))
    return folder


class Vendor:
    """A vendor's command line, run folder, newest snapshot and row step key."""

    def __init__(self, name, flags, folder_flag, resume_flag, last, step_key, numbered=False):
        self.name, self.flags, self.folder_flag = name, flags, folder_flag
        self.resume_flag, self.last, self.step_key, self.numbered = resume_flag, last, step_key, numbered

    def argv(self, base, resume=None):
        return [*self.flags, self.folder_flag, base] + ([self.resume_flag, resume] if resume else [])

    def run_dirs(self, base):
        """The run folders of one chain, oldest first."""
        if self.numbered:
            return sorted(os.path.join(base, d) for d in os.listdir(base)) if os.path.isdir(base) else []
        if self.name == "fastgan":
            return [os.path.join(base, "train_results", "run")]
        return [base]

    def newest_snapshot(self, base):
        for run in reversed(self.run_dirs(base)):
            found = sorted(p for p in glob.glob(os.path.join(glob.escape(run), self.last)) if os.path.isfile(p))
            if found:  # `last` may be a pattern (StyleGAN2-ADA: its names sort in training order)
                return found[-1]
        return None


def vendors(work):
    images = _images(os.path.join(work, "images"))
    return {
        "sngan": Vendor("sngan", ["--data", "digits", "--data-ratio", "0.1", "--ch", "8", "--z_dim", "16",
                                              "--batch_size", "4", "--G_batch_size", "6", "--n_dis", "2",
                                              "--eval_step", "0", "--sample_step", "0", "--tick_steps", "1",
                                              "--device", "cpu", "--total_steps", "40", "--snapshot_steps", "4"],
                        "--logdir", "--resume", "last.pt", "progress/step"),
        "progan": Vendor("progan", ["--data", "digits", "--data-ratio", "0.05", "--ch", "8", "--z_dim", "8",
                                                "--max_res", "8", "--epoch", "2", "--batch_sizes", "16,16",
                                                "--tick_steps", "1", "--sample_step", "0", "--device", "cpu",
                                                "--snapshot_steps", "3"],
                         "--logdir", "--resume", "last.pt", "progress/step"),
        "autogan": Vendor("autogan", ["--data", "digits", "--data-ratio", "0.02", "--gf_dim", "8",
                                                  "--df_dim", "8", "--latent_dim", "16", "-gen_bs", "6", "-dis_bs",
                                                  "5", "--n_critic", "2", "--print_freq", "1", "--val_freq", "0",
                                                  "--device", "cpu", "--max_iter", "24"],
                          "--logdir", "--load_path", os.path.join("Model", "checkpoint.pth"), "progress/step"),
        "fastgan": Vendor("fastgan", ["--path", images, "--im_size", "256", "--batch_size", "2", "--ngf",
                                                  "8", "--ndf", "8", "--nz", "16", "--lpips_untrained",
                                                  "--lpips_width_div", "16", "--device", "cpu", "--tick", "1",
                                                  "--save_interval", "100", "--iter", "6", "--snapshot_interval",
                                                  "2", "--name", "run"],
                          "--output_path", "--resume", "last.pt", "progress/iteration"),
        "stylegan2_ada": Vendor("stylegan2_ada", ["--data", "digits", "--device", "cpu", "--cbase", "256",
                                                              "--cmax", "32", "--map", "2", "--batch", "4",
                                                              "--mbstd-group", "2", "--metrics", "none", "--workers",
                                                              "0", "--grid", "2x2", "--kimg", "0.04", "--tick",
                                                              "0.004", "--snap", "2", "--img-snap", "0", "--seed", "3"],
                                "--outdir", "--resume", "network-snapshot-*.pt", "Progress/tick",
                                numbered=True),
    }


_entries = {}


def _entry(vendor):
    """The vendor's main, imported once in this process (forked runs start without importing anything)."""
    if vendor.name not in _entries:
        _entries[vendor.name] = _import_entry(vendor)
    return _entries[vendor.name]


def _import_entry(vendor):
    if vendor.name == "stylegan2_ada":
        import importlib.util
        tree = os.path.join(ROOT, "vendor", "stylegan2_ada")
        if tree not in sys.path:
            sys.path.insert(0, tree)
        spec = importlib.util.spec_from_file_location("sg2_train_bench", os.path.join(tree, "train.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def main(argv):
            module.main.main(args=argv, standalone_mode=False)
            return 0
        return main
    import importlib
    return importlib.import_module(f"vendor.{vendor.name}.train").main


def start(vendor, argv, log_path):
    """Fork a child that runs the vendor's main(argv) as `python train.py` would (run_cli: exit status and
    one-line errors), its output piped back; a thread sets `ticking` at the first progress line."""
    from vendor.common.runguard import run_cli
    main = _entry(vendor)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a training process like any other, killed with SIGKILL by the parent
        code = 1
        try:
            os.close(read_fd)
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = sys.stdout
            code = run_cli(main, argv)
        except SystemExit as error:
            code = error.code if isinstance(error.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code or 0)
    os.close(write_fd)
    proc = _Child(pid)
    proc.ticking = threading.Event()
    proc.log = open(log_path, "a")

    def pump():
        with os.fdopen(read_fd, "r", errors="replace") as stream:
            for line in stream:
                proc.log.write(line)
                if line.startswith("tick "):
                    proc.ticking.set()
        proc.ticking.set()
    proc.pump = threading.Thread(target=pump, daemon=True)
    proc.pump.start()
    return proc


class _Child:
    """poll / wait / send_signal of a forked child, as subprocess.Popen offers them."""

    def __init__(self, pid):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self):
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig):
        os.kill(self.pid, sig)


def finish(proc):
    code = proc.wait()
    proc.pump.join()
    proc.log.close()
    return code


def row_step(row, key):
    value = row.get(key)
    return value.get("mean") if isinstance(value, dict) else value


def clean(rows):
    return [{k: v for k, v in r.items() if not k.startswith(MACHINE_KEYS)} for r in rows]


def history(vendor, base):
    """The chain's stats rows (StyleGAN2-ADA: each folder's rows before the tick the next one resumed from)."""
    runs = vendor.run_dirs(base)
    rows = []
    for i, run in enumerate(runs):
        path = os.path.join(run, "stats.jsonl")
        mine = read_jsonl(path) if os.path.isfile(path) else []
        if i + 1 < len(runs):
            options = os.path.join(runs[i + 1], "training_options.json")
            resumed_from = json.load(open(options)).get("resume_pkl") if os.path.isfile(options) else None
            if resumed_from and os.path.dirname(os.path.abspath(resumed_from)) == os.path.abspath(run):
                next_tick = load_snapshot(resumed_from)["cur_tick"]
                mine = [r for r in mine if row_step(r, vendor.step_key) < next_tick]
            else:
                mine = []  # a folder nothing continued from (killed before its first snapshot)
        rows += mine
    return rows


def temporaries(vendor, base):
    return [p for run in vendor.run_dirs(base) for pattern in TEMPORARY
            for p in glob.glob(os.path.join(glob.escape(run), pattern), recursive=True)]


def snapshots_load(vendor, base):
    """Every snapshot file under the chain's folders loads (weights_only); returns the failures."""
    bad = []
    for run in vendor.run_dirs(base):
        for pattern in SNAPSHOT_NAMES:
            for path in glob.glob(os.path.join(glob.escape(run), "**", pattern), recursive=True):
                try:
                    load_snapshot(path)
                except SnapshotError as error:
                    bad.append(f"{path}: {error}")
    return bad


def same_tensors(a, b, skip=("total_sec",)):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and (
            torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(
            same_tensors(a[k], b[k], skip) for k in a
            if k not in skip and not str(k).startswith(MACHINE_KEYS))  # wall-clock statistics differ naturally
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same_tensors(x, y, skip) for x, y in zip(a, b))
    return True  # counters and plain values: rows carry them


def bench_vendor(vendor, work, kills, rng):
    base_ref = os.path.join(work, vendor.name, "reference")
    log = os.path.join(work, vendor.name, "log.txt")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = time.time()
    proc = start(vendor, vendor.argv(base_ref), log)
    proc.ticking.wait()
    t_tick = time.time()
    if finish(proc) != 0:
        raise RuntimeError(f"{vendor.name}: the reference run failed (see {log})")
    train_sec = time.time() - t_tick
    ref_rows = clean(history(vendor, base_ref))
    ref_final = load_snapshot(vendor.newest_snapshot(base_ref))

    result = dict(vendor=vendor.name, kills=0, kills_before_first_snapshot=0, kills_with_tmp=0, restarts=0,
                  reference_sec=round(time.time() - t0, 1), problems=[], chains_checked=0, rows_checked=0,
                  duplicated_rows=0, chains_rows_differ=0, temporaries_left=0, chains_not_bit_exact=0)

    def check_chain(base):
        """A chain that was killed and resumed at least once has finished: compare it with the reference."""
        rows = clean(history(vendor, base))
        steps = [row_step(r, vendor.step_key) for r in rows]
        result["chains_checked"] += 1
        result["rows_checked"] += len(rows)
        result["duplicated_rows"] += len(steps) - len(set(steps))
        result["temporaries_left"] += len(temporaries(vendor, base))
        if rows != ref_rows:
            result["chains_rows_differ"] += 1
            missing = sorted(set(row_step(r, vendor.step_key) for r in ref_rows) - set(steps))
            result["problems"].append(f"{base}: rows differ from the reference (missing steps {missing[:10]})")
        if not same_tensors(load_snapshot(vendor.newest_snapshot(base)), ref_final):
            result["chains_not_bit_exact"] += 1

    chain, chain_kills = 0, 0
    t_kill_start = time.time()
    base = os.path.join(work, vendor.name, f"chain{chain}")
    resume = None
    while True:
        proc = start(vendor, vendor.argv(base, resume), log)
        if result["kills"] < kills:
            proc.ticking.wait()
            deadline = time.time() + rng.uniform(0, train_sec)
            while time.time() < deadline and proc.poll() is None:
                time.sleep(0.01)
            if result["kills"] % 2 == 1:  # every second kill: at the next moment a write is under way
                until = time.time() + train_sec
                while time.time() < until and proc.poll() is None and not temporaries(vendor, base):
                    time.sleep(0.0005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                finish(proc)
                result["kills"] += 1
                chain_kills += 1
                print(f"  {vendor.name}: kill {result['kills']} at {time.time() - t_kill_start:.0f} s", flush=True)
                result["kills_with_tmp"] += bool(temporaries(vendor, base))
                result["problems"] += snapshots_load(vendor, base)
                resume = vendor.newest_snapshot(base)
                if resume is None:  # killed before its first snapshot: nothing to resume, start again elsewhere
                    result["kills_before_first_snapshot"] += 1
                    chain, chain_kills = chain + 1, 0
                    base = os.path.join(work, vendor.name, f"chain{chain}")
                continue
        code = finish(proc)
        if code != 0:
            result["problems"].append(f"a resumed run exited {code} (see {log})")
            break
        if chain_kills:
            check_chain(base)
        if result["kills"] >= kills:
            break
        result["restarts"] += 1  # the chain finished: a new one from a fresh start
        chain, chain_kills = chain + 1, 0
        base = os.path.join(work, vendor.name, f"chain{chain}")
        resume = None
    result["reference_rows"] = len(ref_rows)
    return result


def report(results, args, elapsed):
    lines = [
        "# Kill -9 and resume (bench/kill_resume.py)",
        "",
        f"Command: `python bench/kill_resume.py {' '.join(args)}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs; total {elapsed:.0f} s.",
        "",
        "Each vendor: an uninterrupted reference run, then runs killed with SIGKILL at a random moment of their "
        "training (uniform in [0, the reference's training time] after the first progress line) and resumed from "
        "the newest snapshot (every second kill is delayed further to a moment a write is under way, a temporary "
        "file on disk), until the number of kills is reached and the last resume finishes. Checked after "
        "every kill: each snapshot file on disk loads. Checked when a chain that was killed and resumed finishes: "
        "temporaries left, stats rows logged twice, rows equal to the reference (timing / memory entries aside), "
        "final snapshot bit-exact (wall-clock statistics aside). A run that finished before its kill landed ends "
        "its chain; the next kill starts a new one.",
        "",
        "| vendor | kills | kills before the 1st snapshot | kills that left a temporary | resumed chains checked "
        "(rows each) | temporaries left | duplicated rows | chains whose rows differ | chains not bit-exact | "
        "problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['vendor']} | {r['kills']} | {r['kills_before_first_snapshot']} | {r['kills_with_tmp']} | "
                     f"{r['chains_checked']} ({r['reference_rows']}) | {r['temporaries_left']} | "
                     f"{r['duplicated_rows']} | {r['chains_rows_differ']} | {r['chains_not_bit_exact']} | "
                     f"{'; '.join(r['problems']) or 'none'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendors", default="sngan,progan,autogan,fastgan,stylegan2_ada",
                        help="comma-separated vendor trees to kill and resume")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per vendor (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill times")
    parser.add_argument("--out", default=None, help="write the Markdown report here (default: print it)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error("--kills must be >= 1")
    work = tempfile.mkdtemp(prefix="kill-resume-")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: once, here
    rng = random.Random(args.seed)
    start_time = time.time()
    try:
        table = vendors(work)
        names = [v for v in args.vendors.split(",") if v]
        unknown = [v for v in names if v not in table]
        if unknown:
            parser.error(f"--vendors: unknown {unknown}; choose from {sorted(table)}")
        results = []
        for name in names:
            t = time.time()
            results.append(bench_vendor(table[name], work, args.kills, rng))
            print(f"{name}: {json.dumps(results[-1])} ({time.time() - t:.0f} s)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, sys.argv[1:] if argv is None else argv, time.time() - start_time)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    print(text)
    ok = all(not r["problems"] and not r["chains_rows_differ"] and not r["duplicated_rows"]
             and not r["temporaries_left"] and not r["chains_not_bit_exact"] and r["chains_checked"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
