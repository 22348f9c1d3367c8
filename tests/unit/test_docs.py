"""The README is for users: short, the two set-up commands CI and users run, settings that
exist; every other page is under docs/, listed in docs/index.md, and no link is broken."""

from __future__ import annotations

import os
import re
from pathlib import Path

from blocks.settings import FleetSettings, RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted([README, *DOCS.rglob("*.md")])
LINK = re.compile(r"\]\(([^)\s#]*)(#[^)\s]+)?\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading (enough for the headings these pages use)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_readme_is_short_and_names_the_two_setup_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", setup, re.S)
    assert block, "no sh block under '## Set up'"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands == ["./scripts/run.sh", "./scripts/test.sh"]
    for script in ("scripts/run.sh", "scripts/test.sh", "scripts/tomcat-fleet"):
        assert os.access(ROOT / script, os.X_OK), script
    assert ". .venv/bin/activate" in text


def test_readme_names_only_real_settings() -> None:
    fields = {n for cls in (FleetSettings, RuntimeSettings) for n in cls.model_fields}
    named = {m.lower() for m in re.findall(r"TOMCAT_FLEET_([A-Z0-9_]+)", README.read_text())}
    assert named <= fields, f"not settings: {sorted(named - fields)}"


def test_every_page_is_listed_in_the_index() -> None:
    index = (DOCS / "index.md").read_text()
    listed = {
        (DOCS / target).resolve() for target, _ in LINK.findall(index) if target.endswith(".md")
    }
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "index.md"}
    assert pages <= listed, f"not in docs/index.md: {sorted(map(str, pages - listed))}"
    assert "docs/index.md" in README.read_text()


def test_no_link_is_broken() -> None:
    broken = []
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            dest = (page.parent / target).resolve() if target else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor[1:] not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target}{anchor}")
    assert not broken, broken
