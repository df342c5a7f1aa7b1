"""The docs/ pages the code relies on: cited paths exist, cited sections exist, counts agree.

Comments and docstrings cite facts as `docs/<page>.md` (with a section number for
docs/facts/kernels.md); the official parameter counts in the model and tokenizer registries must be
the ones docs/facts/official_counts.md lists with their sources.
"""

import re
from pathlib import Path

import pytest

from mixtok.models.registry import MODELS
from mixtok.tokenizers.registry import TOKENIZERS

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SCANNED = ("mixtok", "tests", "benchmarks", "experiments")
# A citation: docs/<page>.md, then optionally a section number ("9.1", "section 10") or quoted
# headings ('"Spectral filter: DFT-as-GEMM"', '"A" and "B"'). Comments wrap, so citations are
# matched on the text with line breaks (and comment markers) folded into spaces.
CITATION = re.compile(
    r"docs/([A-Za-z0-9_./-]+?\.md)(?:,?\s+(?:section\s+|§\s*)?(\d+(?:\.\d+)?)\b"
    r'|,\s+"([^"]+)"(?:\s+and\s+"([^"]+)")?)?'
)
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def _scanned_files():
    files = [REPO / "README.md"] if (REPO / "README.md").exists() else []
    for folder in SCANNED:
        files += [p for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".md") and p.is_file()]
    return [p for p in files if p.resolve() != Path(__file__).resolve()]


def _citations():
    """(file, cited page, cited section number or None, cited headings) for every docs/ citation."""
    found = []
    for path in _scanned_files():
        text = re.sub(r"[ \t]*\n[ \t]*(?:#[ \t]*)?", " ", path.read_text(encoding="utf-8"))
        for match in CITATION.finditer(text):
            headings = tuple(h for h in match.group(3, 4) if h)
            found.append((str(path.relative_to(REPO)), match.group(1), match.group(2), headings))
    return found


def _headings(page: Path):
    """(section numbers, heading titles) of a page: '### 9.1 Spectral filter' gives '9.1' and 'Spectral filter'."""
    numbers, titles = set(), []
    for line in page.read_text(encoding="utf-8").splitlines():
        match = re.match(r"#{1,4}\s+(?:(\d+(?:\.\d+)?)\.?\s+)?(.*)", line)
        if match:
            numbers.add(match.group(1))
            titles.append(match.group(2).strip().lower())
    return numbers - {None}, titles


def _names_a_heading(cited: str, titles) -> bool:
    """A cited heading is part of one heading's title, or "A: B" with A and B each part of one."""
    cited = cited.lower()
    parts = [cited] if any(cited in t for t in titles) else cited.split(": ", 1)
    return all(any(part in t for t in titles) for part in parts)


def test_every_docs_page_cited_in_the_code_exists():
    missing = [f"{where}: docs/{page}" for where, page, _, _ in _citations() if not (DOCS / page).is_file()]
    assert not missing, "citations of docs pages that do not exist:\n" + "\n".join(missing)


def test_every_section_cited_in_the_code_exists():
    assert {"2", "3.1", "4.1", "4.2", "8.1", "8.2", "9.1", "9.2", "10"} <= _headings(DOCS / "facts" / "kernels.md")[0]
    missing = []
    for where, page, number, cited in _citations():
        if not (DOCS / page).is_file():
            continue  # reported by the test above
        numbers, titles = _headings(DOCS / page)
        if number is not None and number not in numbers:
            missing.append(f"{where}: docs/{page} section {number}")
        missing += [f"{where}: docs/{page} {title!r}" for title in cited if not _names_a_heading(title, titles)]
    assert not missing, "citations of docs sections that do not exist:\n" + "\n".join(missing)


def test_links_between_docs_pages_resolve():
    broken = []
    for page in DOCS.rglob("*.md"):
        for target in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
            if not (page.parent / target).resolve().is_file():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, "broken links between docs pages:\n" + "\n".join(broken)


def _registered_counts():
    counts = {name: MODELS.get(name).official_params for name in MODELS.names()}
    counts.update({name: TOKENIZERS.get(name).official_params for name in TOKENIZERS.names()})
    return {name: count for name, count in counts.items() if count is not None}


@pytest.mark.parametrize("name, count", sorted(_registered_counts().items()))
def test_registered_official_count_is_the_one_docs_list(name, count):
    text = (DOCS / "facts" / "official_counts.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, f"docs/facts/official_counts.md needs exactly one table row for {name}; found {len(rows)}"
    assert f"{count:,}" in rows[0], f"{name}: the registry says {count:,}; the docs row is {rows[0]!r}"


# Notes that live outside the repository; a reader of the code cannot follow a citation of them.
OUTSIDE_NOTES = re.compile(r"(?<![\w/])(?:kernels|DESIGN|official_counts|tokenizers|mixers|scale)\.md\b|\.\./shared/")


def test_no_file_cites_a_note_outside_the_repository():
    bad = []
    for path in _scanned_files() + sorted((REPO / "tools").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE_NOTES.search(line):
                bad.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not bad, "cite the page under docs/ instead:\n" + "\n".join(bad)
