"""docs/settings.md is what `python -m blocks.settings_doc` writes from FleetSettings."""

from __future__ import annotations

from pathlib import Path

from blocks.settings import FleetSettings
from blocks.settings_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in FleetSettings.model_fields.items() if not f.description]
    assert not missing, f"settings without a description: {missing}"


def test_settings_doc_is_current() -> None:
    text = render()
    for name in FleetSettings.model_fields:
        assert f"`TOMCAT_FLEET_{name.upper()}`" in text
    assert DOC.read_text() == text, (
        "docs/settings.md is stale: python -m blocks.settings_doc > docs/settings.md"
    )
