"""The README stays a README: short, every link resolving, its workflow example valid."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import urlparse

import yaml

from dstack.spec.loader import parse_workflow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_WORDS = 2500
# [text](target) and ![alt](target); a target ends at whitespace or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _slug(heading: str) -> str:
    """A heading's anchor, as Python-Markdown's toc (the documentation site) makes it."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(markdown: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", markdown.read_text(), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def _links(markdown: str) -> list[str]:
    return LINK.findall(re.sub(r"```.*?```", "", markdown, flags=re.S))


def test_the_readme_is_at_most_2500_words() -> None:
    words = len(README.read_text().split())
    assert words <= MAX_WORDS, f"README.md has {words} words; move the detail to docs/"


def test_every_link_of_the_readme_resolves() -> None:
    links = _links(README.read_text())
    assert links, "the README links to its documentation"
    broken = []
    for target in links:
        url = urlparse(target)
        if url.scheme:
            if url.scheme != "https" or not url.netloc:
                broken.append(f"{target}: not an https address")
            continue
        path, _, anchor = target.partition("#")
        resolved = (README.parent / path) if path else README
        if not resolved.exists():
            broken.append(f"{target}: {path} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: {path or 'README.md'} has no heading #{anchor}")
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    """The check above is not vacuous: it finds links, headings and their anchors."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n## What a job's environment holds\n")
    assert _anchors(page) == {"a-page", "what-a-jobs-environment-holds"}
    text = "[a](docs/x.md#y) ![b](docs/p.png)\n```\n[not](a-link.md)\n```\n[c](https://e.org)"
    assert _links(text) == ["docs/x.md#y", "docs/p.png", "https://e.org"]


def test_the_readme_workflow_example_is_a_valid_workflow() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    examples = [yaml.safe_load(block) for block in blocks]
    workflows = [
        workflow
        for example in examples
        if isinstance(example, dict)
        for workflow in example.get("workflows", [])
    ]
    assert workflows, "the README shows a workflow"
    for index, raw in enumerate(workflows):
        parse_workflow(raw, source="README.md", index=index)
