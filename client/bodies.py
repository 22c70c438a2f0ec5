"""Small pieces both clients share: answers with no schema elsewhere, and upload helpers."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import IO, Protocol

import msgspec

from limiquantix.common.images import ImageDeleted
from limiquantix.common.vms import VmAction

__all__ = ["ConsoleLog", "ImageDeleted", "ProgressReader", "action_path", "console_log"]

ACTIONS = frozenset({VmAction.START, VmAction.STOP, VmAction.FORCE_STOP, VmAction.REBOOT,
                     VmAction.PAUSE, VmAction.RESUME})


class ConsoleLog(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/vms/{vm}/console-log``: the tail as text, and the log's whole size."""

    text: str
    size: int = 0
    truncated: bool = False


def console_log(body: bytes, headers: Mapping[str, str]) -> ConsoleLog:
    """The text answer and its ``X-Log-Size`` / ``X-Log-Truncated`` headers (lower case)."""
    size = headers.get("x-log-size", "")
    return ConsoleLog(text=body.decode("utf-8", errors="replace"),
                      size=int(size) if size.isdigit() else len(body),
                      truncated=headers.get("x-log-truncated", "") == "true")


def action_path(action: VmAction | str) -> str:
    """The URL segment of a lifecycle action; delete is :meth:`delete`, not an action."""
    value = VmAction(action)
    if value not in ACTIONS:
        raise ValueError(f"{value} is not an action; use one of {', '.join(sorted(ACTIONS))}")
    return value.value


class Readable(Protocol):
    """What an upload reads from: a binary file, or anything with its ``read``."""

    def read(self, size: int = -1, /) -> bytes: ...


class ProgressReader:
    """A file whose reads report ``progress(sent, total)`` (the upload body)."""

    def __init__(self, file: Readable, total: int,
                 progress: Callable[[int, int], None] | None) -> None:
        self.file, self.total, self.progress = file, total, progress
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.sent += len(data)
        if self.progress is not None:
            self.progress(self.sent, self.total)
        return data


def file_size(file: IO[bytes]) -> int:
    return os.fstat(file.fileno()).st_size


def base_name(path: str) -> str:
    return os.path.basename(path)
