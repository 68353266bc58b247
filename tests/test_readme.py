"""The README is part of the product: its set-up and its Monitoring section must stay true."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "veto-responsiveness.json"


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:]]
    assert [c for c in commands if c] == ["make run", "make test"]


def test_monitoring_section_names_exactly_the_dashboard_panels() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    titles = {p["title"] for p in panels if p["type"] != "row"}
    section = _section("Monitoring").split("### Dashboard panels", 1)[1].split("### ", 1)[0]
    named = set(re.findall(r"^- \*\*(.+?)\*\*", section, re.M))
    assert named == titles


def test_readme_test_command_is_the_one_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in README
