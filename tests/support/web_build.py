"""The web UI's build for tests: web/build.sh makes it, or finds it current, in milliseconds."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
BUILD = ROOT / "services" / "api" / "static" / "app"
# Screenshots of every page are kept here (not committed: build/ is ignored) for people to look at.
SCREENSHOTS = ROOT / "build" / "screenshots"


def ensure_built() -> Path:
    """The build directory, rebuilt first if a source changed (npm ci on a new lock file)."""
    # One build at a time: parallel test workers (pytest -n) would otherwise race in web/.
    (ROOT / "build").mkdir(exist_ok=True)
    with (ROOT / "build" / ".web-build.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(["bash", str(WEB / "build.sh")], capture_output=True,
                                text=True, timeout=600, check=False)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, f"web/build.sh failed:\n{output}"
    assert (BUILD / "index.html").is_file()
    return BUILD
