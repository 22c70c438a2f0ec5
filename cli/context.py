"""What every command gets: its parsed arguments, the output streams and a lazy API client."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import TextIO

from limiquantix.cli import config
from limiquantix.cli.client import ApiClient


@dataclass
class Context:
    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _client: ApiClient | None = None

    @property
    def client(self) -> ApiClient:
        """Resolved on first use, so ``--help`` and ``completion`` need no token."""
        if self._client is None:
            cfg = config.resolve(getattr(self.args, "url", None), getattr(self.args, "token", None))
            self._client = ApiClient(cfg)
        return self._client

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def warn(self, text: str) -> None:
        self.err.write(f"warning: {text}\n")
        self.err.flush()
