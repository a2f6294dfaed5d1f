"""Citations of the facts page in the code resolve: no ``REFERENCE`` citations (that file is not in the repository)
and every ``docs/official_models.md §N`` names a numbered section heading of docs/official_models.md."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "official_models.md"
SCANNED = ("world_model", "distillation", "lingbot_env", "benchmarks", "tools")

# Old citations of the out-of-repo REFERENCE.md: "REFERENCE section 2", "(REFERENCE: ...)", "the REFERENCE's ...",
# "REFERENCE.md". A bare word match, so identifiers such as ``REFERENCE_TFLOP_PER_LATENT_FRAME`` do not count.
OLD_CITATION = re.compile(r"REFERENCE section|\bREFERENCE\b")
# "docs/official_models.md §3", "... §1, §2, §8", "... §9 and §11", "... §10's"; the page named with or without docs/.
CITATION = re.compile(r"official_models\.md((?:\s*(?:,|and|or)?\s*§\s*\d+(?:\.\d+)?)+)")
SECTION_NUMBER = re.compile(r"§\s*(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s+\S", re.MULTILINE)


def page_sections(text: str) -> set[str]:
    """Numbers of the page's numbered headings: ``## 3. Title`` -> "3" (``### 3.1 Title`` -> "3.1")."""
    return set(HEADING.findall(text))


def citation_problems(source: str, sections: set[str]) -> list[str]:
    """What is wrong with the citations in one file's text (empty: nothing)."""
    problems = []
    for lineno, line in enumerate(source.splitlines(), 1):
        if OLD_CITATION.search(line):
            problems.append(f"line {lineno}: cites REFERENCE (not in the repository): {line.strip()}")
    # On the whole text, so a citation wrapped after the page name is still checked.
    for match in CITATION.finditer(source):
        lineno = source.count("\n", 0, match.start()) + 1
        for number in SECTION_NUMBER.findall(match.group(1)):
            if number not in sections:
                problems.append(f"line {lineno}: §{number} is not a section of {PAGE.name}")
    return problems


def scanned_files() -> list[Path]:
    return sorted(p for d in SCANNED if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


def test_page_has_numbered_sections():
    sections = page_sections(PAGE.read_text(encoding="utf-8"))
    assert len(sections) >= 10
    top = sorted(int(s) for s in sections if "." not in s)
    assert top == list(range(1, len(top) + 1)), f"top-level sections must be numbered 1..N without gaps: {top}"


def test_checker_catches_bad_citations():
    sections = {"1", "2", "3"}
    assert citation_problems("x = 1  # docs/official_models.md §2\n", sections) == []
    assert citation_problems('"""See docs/official_models.md §1, §3 and §2."""\n', sections) == []
    assert citation_problems("REFERENCE_TFLOP = 4.35  # docs/official_models.md §3's figure\n", sections) == []
    bad = [
        "# (REFERENCE section 4)\n",
        '"""Shapes (REFERENCE: 42)."""\n',
        "# the REFERENCE's WASD order\n",
        "# docs/official_models.md §7\n",
        "# docs/official_models.md §1, §9\n",
        "# docs/official_models.md §2.4\n",
        '"""... shapes as in docs/official_models.md\n§5."""\n',
    ]
    for text in bad:
        assert len(citation_problems(text, sections)) == 1, text


def test_citations_resolve():
    sections = page_sections(PAGE.read_text(encoding="utf-8"))
    files = scanned_files()
    assert len(files) > 20, "the scanned packages moved: update SCANNED"
    problems = [
        f"{path.relative_to(ROOT)} {problem}"
        for path in files
        for problem in citation_problems(path.read_text(encoding="utf-8"), sections)
    ]
    assert not problems, "\n".join(problems)
