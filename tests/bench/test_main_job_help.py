"""`bench/main_job.py --help` says what the job does in a few lines; every option of `compare.py run` and
`compare.py report` has help text."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _help(*args):
    r = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _options_without_help(text):
    """Option lines of an argparse --help whose help column is empty (the next line is another option)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(("options:", "optional arguments:")))
    opts = [line for line in lines[start + 1:] if line.strip()]
    bad = []
    for i, line in enumerate(opts):
        stripped = line.strip()
        if not stripped.startswith("-"):
            continue
        has_inline = re.search(r"\S\s{2,}\S", stripped) is not None  # "--out OUT      help text"
        follows = i + 1 < len(opts) and not opts[i + 1].strip().startswith("-") and opts[i + 1].startswith(" " * 8)
        if not has_inline and not follows:
            bad.append(stripped)
    return bad


def test_main_job_help_is_short_and_every_compare_option_has_help():
    text = _help(str(ROOT / "bench" / "main_job.py"))
    description = text.split("options:")[0] if "options:" in text else text.split("optional arguments:")[0]
    assert len(description.strip().splitlines()) <= 16, description
    assert "comparison.md" in description and "main-job-cpu.md" in description
    assert "n_dis 5" not in description  # the preset history lives in bench/results/main-job-cpu.md
    assert _options_without_help(text) == []
    for sub in ("run", "report"):
        assert _options_without_help(_help(str(ROOT / "bench" / "compare.py"), sub)) == [], sub
    assert _options_without_help(_help(str(ROOT / "bench" / "tickets.py"))) == []
