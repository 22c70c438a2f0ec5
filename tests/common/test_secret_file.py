"""The shared secret file is created once, whole, however many callers race to create it."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from limiquantix.common.library_tokens import load_or_create_secret_file


def test_callers_racing_to_create_the_secret_all_read_the_same_whole_secret(
        tmp_path: Path) -> None:
    for trial in range(20):
        path = tmp_path / f"secret-{trial}"
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            read = set(pool.map(load_or_create_secret_file, [path] * 32))
        assert len(read) == 1 and len(read.pop()) >= 32
        assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"secret-{trial}" for trial in range(20))  # no temporary file left behind
