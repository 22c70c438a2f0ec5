"""The README stays true: its configuration table, its two commands and its table of test marks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from limiquantix.common.settings import markdown_table
from tests.support.marks import MARK_TIMEOUTS_S

ROOT = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_matches_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table -->")[1].split("<!-- /settings-table -->")[0]
    assert table.strip() == markdown_table().strip(), "run the snippet in README to refresh"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["bash scripts/up.sh", "bash scripts/test.sh"]
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_explains_every_test_mark_its_time_limit_and_the_quick_command() -> None:
    tests = (ROOT / "README.md").read_text().split("\n## Tests", 1)[1].split("\n## ", 1)[0]
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    registered = {m.split(":")[0] for m in pytest_ini["ini_options"]["markers"]}
    rows = dict(re.findall(r"^\| `(\w+)` \|.*\| (\d+) s \|$", tests, re.M))
    assert set(rows) == registered
    assert {m: float(s) for m, s in rows.items()} == MARK_TIMEOUTS_S
    assert f"| {pytest_ini['ini_options']['timeout']} s |" in tests  # the default, unmarked
    quick = re.search(r'-m "([^"]+)"', (ROOT / "scripts" / "test.sh").read_text())
    assert quick is not None and f'-m "{quick[1]}"' in tests
    assert quick[1] == " and ".join(f"not {m}" for m in rows)
