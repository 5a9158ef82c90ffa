"""The documentation stays true to the repository.

- Every markdown link in README.md and docs/*.md points inside the
  repository, at a file or folder that exists.
- docs/architecture.md (the design) names every folder of the repository
  that holds code or data: each top-level folder and each package folder
  under hyperbatch/ and cli/, written as its path from the root with a
  trailing slash (`hyperbatch/adapters/aws/`). The folders are listed from
  the filesystem, so a new folder fails this test until the design names it.
- A repository path written in backticks in those documents
  (`hyperbatch/core/names.py`, `stacks/`) exists, so renamed modules do not
  live on in the prose.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
PACKAGE_ROOTS = ("hyperbatch", "cli")

# Never part of the layout: caches, environments, build output (the .gitignore adds its own).
SKIPPED = ("__pycache__", ".venv", "cdk.out", "*.egg-info")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
# [text](target "title") and ![alt](target); link text may hold one level of brackets or code.
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _ignored_patterns() -> list[str]:
    """Folder-name patterns of the repository's .gitignore (plain lines only; negations are kept)."""
    patterns = list(SKIPPED)
    gitignore = ROOT / ".gitignore"
    if gitignore.exists():
        for line in gitignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "!")):
                patterns.append(line.rstrip("/").lstrip("/"))
    return patterns


IGNORED = _ignored_patterns()


def _skipped(path: Path) -> bool:
    name = path.name
    return name.startswith(".") or any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def _holds_files(folder: Path) -> bool:
    """Whether the folder holds a file outside skipped folders (a folder left with only caches does not count)."""
    for entry in folder.iterdir():
        if _skipped(entry):
            continue
        if entry.is_file() or (entry.is_dir() and _holds_files(entry)):
            return True
    return False


def _folders(base: Path, recursive: bool) -> list[Path]:
    out = []
    for entry in sorted(base.iterdir()):
        if entry.is_dir() and not _skipped(entry) and _holds_files(entry):
            out.append(entry)
            if recursive:
                out += _folders(entry, recursive=True)
    return out


def layout_folders() -> list[str]:
    """Every top-level folder and every folder under hyperbatch/ and cli/, as root-relative paths."""
    found = [f.name for f in _folders(ROOT, recursive=False)]
    for package in PACKAGE_ROOTS:
        found += [f.relative_to(ROOT).as_posix() for f in _folders(ROOT / package, recursive=True)]
    return found


def _prose(path: Path) -> str:
    """The document without its fenced code blocks (their brackets are not links)."""
    return _FENCE.sub("", path.read_text())


def links(path: Path) -> list[str]:
    text = _prose(path)
    return [m.group(1) for m in _INLINE_LINK.finditer(text)] + [m.group(1) for m in _REFERENCE.finditer(text)]


def _problem(document: Path, target: str) -> str | None:
    """Why a link target is broken, or None. Web and mail links are not files and are left alone."""
    parts = urlsplit(target)
    if parts.scheme == "file":
        return "points outside the repository (a file: URL)"
    if parts.scheme or parts.netloc:
        return None  # http(s), mailto: not a path in this repository
    if not parts.path:
        return None  # "#section" within the same document
    if parts.path.startswith("/"):
        return "points outside the repository (an absolute path)"
    resolved = (document.parent / unquote(parts.path)).resolve()
    if not resolved.is_relative_to(ROOT):
        return "points outside the repository"
    if not resolved.exists():
        return f"names {resolved.relative_to(ROOT).as_posix()}, which does not exist"
    return None


def test_the_documents_and_folders_are_found():
    assert ARCHITECTURE in DOCUMENTS
    assert (ROOT / "README.md") in DOCUMENTS
    folders = layout_folders()
    assert {"hyperbatch", "cli", "tests", "hyperbatch/core", "hyperbatch/adapters/aws"} <= set(folders)
    assert not [f for f in folders if "__pycache__" in f or f.startswith(".")]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_points_at_a_file_of_the_repository(document):
    broken = [f"[...]({t}): {why}" for t in links(document) if (why := _problem(document, t))]
    assert not broken, f"{document.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_the_link_check_catches_what_it_must(tmp_path):
    readme = ROOT / "README.md"
    assert _problem(readme, "../shared/ARCHITECTURE.md") == "points outside the repository"
    assert _problem(readme, "/work/shared/ARCHITECTURE.md").startswith("points outside the repository")
    assert _problem(readme, "docs/no-such-page.md") == "names docs/no-such-page.md, which does not exist"
    assert _problem(readme, "docs/architecture.md#4-flows") is None
    assert _problem(readme, "https://docs.aws.amazon.com/") is None
    page = tmp_path / "page.md"
    page.write_text("See [`the design`](../shared/ARCHITECTURE.md) and ![x](img.png 'title').\n"
                    "```\n[not](a-link.md)\n```\n[ref]: docs/x.md\n")
    assert links(page) == ["../shared/ARCHITECTURE.md", "img.png", "docs/x.md"]


def test_the_path_check_reads_paths_only():
    assert _REPO_PATH.match("hyperbatch/core/names.py") and _REPO_PATH.match("hyperbatch/adapters/local/")
    assert _REPO_PATH.match("hyperbatch/names.py")  # checked, and gone since the re-layout
    assert not (ROOT / "hyperbatch/names.py").exists()
    for text in ("stacks/api.ROUTES", "configurations/*.json", "hyperbatch.core.outbox", "$HYPERBATCH_HOME/token"):
        assert not _REPO_PATH.match(text), text


def test_the_design_names_every_folder():
    text = ARCHITECTURE.read_text()
    missing = [folder for folder in layout_folders() if f"{folder}/" not in text]
    assert not missing, (
        "docs/architecture.md §1 does not name these folders (write each as its path with a trailing "
        "slash, e.g. `hyperbatch/core/`, and say what it holds): " + ", ".join(missing)
    )


# A folder (`stacks/`) or a file with an extension (`hyperbatch/core/names.py`), under a top-level folder;
# `stacks/api.ROUTES` (a name in a module) and globs (`configurations/*.json`) are not checked.
_REPO_PATH = re.compile(r"^(?:%s)/(?:[\w.-]+/)*(?:[\w-]+\.(?:py|md|sh|json|toml|txt|yml|yaml|cfg))?$" % "|".join(
    re.escape(f.name) for f in _folders(ROOT, recursive=False)
))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_repository_paths_in_backticks_exist(document):
    paths = {m.group(1) for m in _CODE_SPAN.finditer(document.read_text()) if _REPO_PATH.match(m.group(1))}
    gone = sorted(p for p in paths if not (ROOT / p).exists())
    assert not gone, f"{document.relative_to(ROOT)} names paths that do not exist: {', '.join(gone)}"
