"""What the test marks mean for the root conftest's hooks (and the README's table of marks)."""

from __future__ import annotations

# Fixtures that start the whole system: a test using one is marked ``stack``.
STACK_FIXTURES = frozenset({"stack", "ui_stack"})

# Tests that boot QEMU domains: the full run gives them one worker of their own (conftest).
QEMU_MARKS = ("e2e", "guest")

# Per-test time limits (setup and teardown included) raised from pyproject's default (60 s) by a
# test's marks; the largest applies. Measured on a busy 2-core machine: the slowest stack, e2e or
# browser test took ~31 s plus ~5 s of set-up (80 of them: 337 s); an unmarked test at most ~36 s
# (most under 5 s). Real guests boot in ~45 s under TCG, minutes when the machine is busy, and
# their image is built by debootstrap on first use; their tests set longer limits of their own.
MARK_TIMEOUTS_S = {"stack": 300.0, "e2e": 300.0, "browser": 300.0, "fuzz": 300.0,
                   "guest": 900.0, "cluster": 120.0,
                   "build": 300.0}
