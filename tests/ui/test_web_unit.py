"""The web UI's component and unit tests (Vitest, in web/) run as part of the suite."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.web_build import WEB, ensure_built


@pytest.mark.build
@pytest.mark.timeout(300)  # vitest sets up jsdom per file: over a minute when the cores are busy
def test_vitest_component_tests_pass() -> None:
    """The wizard's validation, the review summary, key checks, the editor and the SSE parser."""
    ensure_built()  # also installs the dependencies (npm ci) when the lock file changed
    result = subprocess.run(["npm", "run", "--silent", "test", "--", "--reporter=dot"], cwd=WEB,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout
