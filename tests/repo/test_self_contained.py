"""The repository stands alone: what it says, it says inside itself.

A user's clone has nothing beside it, so no file may send the reader (or a
program) to a path outside the repository, every relative link in the
Markdown must lead to a file that exists, every `*.md` a file names must be
found, every "docs/RELIABILITY.md row N" cited must be a row of that table,
every benchmark layer-set id (BENCH-14) must be the name of a set under
bench/, and the reference values of docs/SEMANTICS.md must be what PyTorch
computes.

Files: `git ls-files` when the tree is a git checkout, otherwise every file
below the root except build trees, VCS data and generated code (a copy made
without .git, as the Docker build context is).
"""

import json
import math
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".git", "__pycache__", "_gen"}


def repository_files():
    if (ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                                check=True).stdout.decode().split("\0")
        return sorted(ROOT / name for name in listed if name and (ROOT / name).is_file())
    files = []
    for directory, subdirs, names in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith("build")]
        files.extend(pathlib.Path(directory) / name for name in names)
    return sorted(files)


def text_files():
    """(relative path, text) of every file that decodes as UTF-8."""
    out = []
    for path in repository_files():
        try:
            out.append((path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return out


TEXT_FILES = text_files()


def line_of(text, index):
    return text.count("\n", 0, index) + 1


# Paths that lead out of the repository. Written so that this file does not
# match itself: the sibling directory the developers keep next to the
# project, and absolute paths of the machine it was written on.
OUTSIDE = [
    (re.compile(r"\.\./+shared\b"), "a sibling directory outside the repository"),
    (re.compile(r"\bshared[/](?:docs|bench|seed|tools|hooks)\b"), "the developers' shared tree"),
    (re.compile(r"(?<![\w.])/work[/]"), "an absolute path of a development machine"),
    (re.compile(r"(?<![\w.])/(?:home|root|tmp)[/][\w.-]+[/][\w.-]+/(?:docs|bench)[/]"),
     "an absolute path to somebody's checkout"),
]


def test_no_reference_leaves_the_repository():
    found = []
    for name, text in TEXT_FILES:
        for pattern, what in OUTSIDE:
            for match in pattern.finditer(text):
                found.append("%s:%d: %r (%s)" % (name, line_of(text, match.start()),
                                                 match.group(0), what))
    assert not found, "references outside the repository:\n" + "\n".join(found)


def github_slug(heading):
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def anchors_of(markdown):
    return {github_slug(re.sub(r"[`*_]", "", m.group(1)))
            for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", markdown, re.MULTILINE)}


MARKDOWN_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def test_markdown_links_resolve():
    broken = []
    for name, text in TEXT_FILES:
        if not name.endswith(".md"):
            continue
        # Code blocks and inline code are examples, not links.
        prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        prose = re.sub(r"`[^`\n]*`", "", prose)
        for match in MARKDOWN_LINK.finditer(prose):
            target = match.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (ROOT / name).parent / path_part if path_part else ROOT / name
            where = "%s: [..](%s)" % (name, target)
            if not resolved.resolve().is_relative_to(ROOT):
                broken.append(where + " leaves the repository")
            elif not resolved.exists():
                broken.append(where + " does not exist")
            elif anchor and resolved.suffix == ".md" and \
                    anchor not in anchors_of(resolved.read_text(encoding="utf-8")):
                broken.append(where + " names no heading of " + resolved.name)
    assert not broken, "broken Markdown links:\n" + "\n".join(broken)


MD_MENTION = re.compile(r"(?<![\w./:-])((?:\.\./|\./)?(?:[\w.-]+/)*[\w-]+\.md)\b")


def test_named_markdown_files_exist():
    """`docs/SEMANTICS.md` in a comment must exist, from the root or beside the file."""
    missing = []
    for name, text in TEXT_FILES:
        here = (ROOT / name).parent
        for match in MD_MENTION.finditer(text):
            mention = match.group(1)
            candidates = [(ROOT / mention).resolve(), (here / mention).resolve()]
            if any(c.is_relative_to(ROOT) and c.exists() for c in candidates):
                continue
            missing.append("%s:%d: %s" % (name, line_of(text, match.start()), mention))
    assert not missing, "names of Markdown files that do not exist here:\n" + "\n".join(missing)


def reliability_rows():
    table = (ROOT / "docs/RELIABILITY.md").read_text(encoding="utf-8")
    return {int(m.group(1)) for m in re.finditer(r"^\|\s*(\d+)\s*\|", table, re.MULTILINE)}


CITATION = re.compile(r"RELIABILITY(?:\.md)? rows? ((?:\d+(?:-\d+)?(?:, | and |,? and )?)+)")


def test_cited_reliability_rows_exist():
    rows = reliability_rows()
    assert set(range(1, 19)) <= rows, "rows 1-18 are cited by number; keep them"
    bad = []
    for name, text in TEXT_FILES:
        for match in CITATION.finditer(text):
            for first, last in re.findall(r"(\d+)(?:-(\d+))?", match.group(1)):
                cited = range(int(first), int(last or first) + 1)
                bad += ["%s:%d: row %d" % (name, line_of(text, match.start()), n)
                        for n in cited if n not in rows]
    assert not bad, "rows cited but not in docs/RELIABILITY.md:\n" + "\n".join(bad)


def test_layer_set_ids_are_defined():
    defined = {}
    for path in sorted((ROOT / "bench").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(document, dict) and "layers" in document:
            defined[document.get("name")] = path
    assert "BENCH-14" in defined, "bench/layers.json must define BENCH-14"
    assert len(json.loads(defined["BENCH-14"].read_text())["layers"]) == 14
    undefined = ["%s:%d: %s" % (name, line_of(text, m.start()), m.group(0))
                 for name, text in TEXT_FILES
                 for m in re.finditer(r"\bBENCH-\d+\b", text) if m.group(0) not in defined]
    assert not undefined, "layer-set ids no file under bench/ defines:\n" + "\n".join(undefined)


# --- The reference values of docs/SEMANTICS.md ------------------------------

def reference_rows():
    text = (ROOT / "docs/SEMANTICS.md").read_text(encoding="utf-8")
    section = text.split("## Reference values", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0].isdigit():
            k, s, d = (int(c) for c in cells[:3])
            begin, end = (int(v) for v in re.findall(r"-?\d+", cells[5]))
            rows.append(dict(k=k, s=s, d=d, padding=cells[3], mode=cells[4], pads=(begin, end),
                             out=int(cells[6]), values=[float(v) for v in cells[7].split()]))
    return rows


def preset_pads(preset, n, k, s, d):
    span = d * (k - 1) + 1
    if preset == "VALID":
        return 0, 0
    if preset in ("SAME_UPPER", "SAME_LOWER"):
        total = max(0, (math.ceil(n / s) - 1) * s + span - n)
        small, large = total // 2, total - total // 2
        return (small, large) if preset == "SAME_UPPER" else (large, small)
    if preset == "CAUSAL":
        return span - 1, 0
    return None  # EXPLICIT: as the row states


def test_reference_table_is_what_pytorch_computes():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rows = reference_rows()
    assert len(rows) >= 16, "the reference table of docs/SEMANTICS.md was not found"
    x = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 9)
    for row in rows:
        expected_pads = preset_pads(row["padding"], 9, row["k"], row["s"], row["d"])
        if expected_pads is not None:
            assert row["pads"] == expected_pads, row
        mode = {"zeros": "constant"}.get(row["mode"], row["mode"])
        padded = functional.pad(x, row["pads"], mode=mode)
        y = functional.conv1d(padded, torch.ones(1, 1, row["k"], dtype=torch.float64),
                              stride=row["s"], dilation=row["d"])[0, 0].tolist()
        assert len(y) == row["out"] == len(row["values"]), (row, y)
        assert y == row["values"], (row, y)
