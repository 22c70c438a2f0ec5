"""Golden files: generated text (domain XML, seed ISO files, the OpenAPI document) compared with a
committed copy. ``pytest --update-golden`` (or ``LQ_UPDATE_GOLDEN=1``) rewrites them from the
current output; review the diff before committing it."""

from __future__ import annotations

from pathlib import Path


def assert_golden(path: Path, actual: str, update: bool) -> None:
    """``actual`` is the golden file at ``path``; with ``update`` the file is rewritten first."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
    assert path.is_file(), f"no golden file {path}: run pytest with --update-golden"
    assert actual == path.read_text(), f"{path} differs: if intended, run pytest --update-golden"
