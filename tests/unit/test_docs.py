"""Generated docs match the code."""

from minitron.config.docgen import render

from helpers import ROOT


def test_configuration_reference_is_current():
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), "run: python -m minitron.config.docgen > docs/configuration.md"
