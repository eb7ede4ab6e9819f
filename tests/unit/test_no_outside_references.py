"""No file of the repository refers to a document outside it (issue 10 section 3).

A clone must carry every document its code cites. The scan reads every file git tracks (and new
files it does not ignore) as text and fails, naming the file and the line, when one cites the
design notes the project was seeded with, or a path outside the checkout, instead of ``docs/``;
when one cites a ``docs/<name>.md`` that does not exist; or when it cites a section or an
invariant that document does not have (each numbered heading carries an anchor:
docs/README.md, "How to cite these documents"). Links between the files of ``docs/`` must land
on a file and an anchor that exist.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "var",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "dist",
}

#: The DLMS notes' file name without ``docs/`` before it: the seed's copy, outside docs/ itself.
BARE_NOTES = re.compile(r"(?<![\w/.-])dlms-security\.md")
#: What must never be cited, and what to cite instead. (Spelt so that this file passes itself.)
OUTSIDE = [
    (re.compile(r"\.\./+shared\b"), "a path outside the repository"),
    (re.compile(r"/work/+(?:shared|main|wt|baseline)\b"), "an absolute path outside it"),
    (re.compile(r"\bshared/+(?:DESIGN|docs)\b"), "the seed's shared documents"),
    (
        re.compile(r"(?<!docs/)\bDESIGN\.md"),
        "the seed's design notes: cite docs/architecture.md or docs/token.md",
    ),
    (BARE_NOTES, "the seed's DLMS notes: cite docs/dlms-security.md"),
    (
        re.compile(r"style-by-exampl[e]"),
        "the seed's style guide: cite docs/architecture.md section 7",
    ),
]

_NUMBER = r"\d+(?:\.\d+)*"
#: ``docs/<name>.md``, optionally followed by ``section(s)``/``invariant(s)`` and numbers
#: (``docs/architecture.md, invariant 4``; ``docs/dlms-security.md sections 2.3, 2.6 and 10``;
#: ``docs/dlms-security.md 8.6``).
CITATION = re.compile(
    r"(?<![\w/.-])docs/(?P<doc>[\w.-]+\.md)"
    r"(?:,?[ \t]*\n?[ \t]*(?:(?P<kind>sections?|invariants?)\s+)?"
    rf"(?P<numbers>{_NUMBER}(?:(?:\s*,\s*|\s+and\s+){_NUMBER})*))?"
)
#: A relative Markdown link inside docs/: ``[text](file.md#anchor)`` or ``[text](#anchor)``.
LINK = re.compile(r"\]\((?P<file>[\w.-]+\.md)?(?:#(?P<anchor>[\w-]+))?\)")
ANCHOR = re.compile(r'<a id="(?P<id>[\w-]+)"></a>')


def repository_files() -> list[Path]:
    """Every file git tracks or would track; a plain walk where git is unavailable."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
        return [ROOT / n for n in names if (ROOT / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        found: list[Path] = []
        for folder, dirs, files in os.walk(ROOT):
            dirs[:] = sorted(
                d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")
            )
            found.extend(Path(folder) / f for f in sorted(files))
        return found


def read_text(path: Path) -> str | None:
    """The file as text, or None for a binary file (one holding a NUL byte)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", "replace")


@cache
def anchors(doc: str) -> frozenset[str]:
    """The anchors of ``docs/<doc>`` (empty when it does not exist)."""
    path = DOCS / doc
    if not path.is_file():
        return frozenset()
    return frozenset(m["id"] for m in ANCHOR.finditer(path.read_text(encoding="utf-8")))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def problems(name: str, text: str) -> list[str]:
    """Every outside reference and every broken docs/ citation in ``text`` (from file ``name``)."""
    found: list[str] = []
    in_docs = name.startswith("docs/")
    for pattern, what in OUTSIDE:
        if in_docs and pattern is BARE_NOTES:
            continue  # inside docs/, the bare name is the file next door
        for m in pattern.finditer(text):
            found.append(f"{name}:{_line(text, m.start())}: {m.group(0)!r} refers to {what}")
    for m in CITATION.finditer(text):
        doc, line = m["doc"], _line(text, m.start())
        if not (DOCS / doc).is_file():
            found.append(f"{name}:{line}: docs/{doc} does not exist")
            continue
        if m["numbers"] is None:
            continue
        prefix = "invariant" if (m["kind"] or "").startswith("invariant") else "section"
        for number in re.findall(_NUMBER, m["numbers"]):
            anchor = f"{prefix}-{number.replace('.', '-')}"
            if anchor not in anchors(doc):
                found.append(f"{name}:{line}: docs/{doc} has no {prefix} {number} (#{anchor})")
    if name.startswith("docs/") and name.endswith(".md"):
        here = name.removeprefix("docs/")
        for m in LINK.finditer(text):
            target = m["file"] or here
            line = _line(text, m.start())
            if not (DOCS / target).is_file():
                found.append(f"{name}:{line}: link to {target}, which is not in docs/")
            elif m["anchor"] and m["anchor"] not in anchors(target):
                found.append(f"{name}:{line}: link to {target}#{m['anchor']}, no such anchor")
    return found


def test_no_file_refers_outside_the_repository_or_to_a_missing_doc() -> None:
    files = repository_files()
    report: list[str] = []
    for path in files:
        text = read_text(path)
        if text is not None:
            report.extend(problems(path.relative_to(ROOT).as_posix(), text))
    assert not report, "\n".join(report)


def test_the_scan_covers_the_repository() -> None:
    """Guard against a scan that reads nothing: code, tests, docs and READMEs are all in it."""
    names = {p.relative_to(ROOT).as_posix() for p in repository_files()}
    expected = {"kms/errors.py", "README.md", "docs/architecture.md", "tests/vectors/README.md"}
    assert expected <= names


def test_the_scan_flags_what_it_must_and_passes_the_citation_forms() -> None:
    seed = "DESIGN" + ".md"
    notes = "dlms-security" + ".md"
    bad = [
        "see ../" + "shared/" + seed,
        f"({seed} invariant 4)",
        f"(also {notes} 8.4)",
        "see /work/" + "shared/" + "docs/" + notes,
        "docs/" + "nowhere.md",
        "docs/" + notes + " section 99",
        "docs/" + "architecture.md, invariant 10",
        "docs/" + "token.md\n    section 42",
        "style-by-" + "example",
    ]
    for text in bad:
        assert problems("example.py", text), text
    good = [
        "docs/" + "architecture.md, invariant 4",
        "docs/" + notes + " sections 2.3, 2.6 and 10",
        "docs/" + notes + "\nsections 4, 5\nand 2.6",
        "docs/" + notes + " 8.6.",
        "docs/" + "token.md section 9)",
        "docs/" + "architecture.md section 7.6",
    ]
    for text in good:
        assert problems("example.py", text) == [], text
    assert problems("docs/token.md", "[x](architecture.md#invariant-99)")
    assert problems("docs/token.md", "[x](" + notes + "#section-2-3)") == []
    assert problems("docs/token.md", "[x](#section-4)") == []
