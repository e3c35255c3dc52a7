"""README.md, docs/*.md and vendor/*/README.md link only to files in the repository (a public checkout has no
development machine's paths and no `shared/` folder beside it), and their code blocks are fenced in pairs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "vendor").glob("*/README.md"))]


def test_links_resolve_inside_the_repository():
    bad = []
    for md in DOCS:
        text = md.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^(https?|mailto):", target) or target.startswith("#"):
                continue
            path = (md.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                bad.append(f"{md.relative_to(ROOT)}: {target}")
        for hit in re.findall(r"(?:\.\./shared/|/work/shared|/work/main)\S*", text):
            bad.append(f"{md.relative_to(ROOT)}: {hit}")
    assert bad == []


def test_commands_are_fenced_and_reference_anchors_exist():
    loose = []
    for md in DOCS:
        inside = False
        for n, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                inside = not inside
            elif not inside and re.match(r"^(python3? |sparse-core |bash |[A-Z]+=\")", line):
                loose.append(f"{md.relative_to(ROOT)}:{n}: {line[:60]}")
        assert not inside, f"{md}: a code fence is not closed"
    assert loose == []
    refs = (ROOT / "docs" / "REFERENCES.md").read_text(encoding="utf-8")
    for anchor in re.findall(r"docs/REFERENCES\.md#([\w-]+)", (ROOT / "README.md").read_text(encoding="utf-8")):
        headings = [re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-")
                    for h in re.findall(r"^#+ (.+)$", refs, re.M)]
        assert anchor in headings, anchor
