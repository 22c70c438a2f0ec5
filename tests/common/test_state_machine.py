"""The VM state machine: what the API may record for each action."""

from __future__ import annotations

import pytest

from limiquantix.common.vms import TRANSITIONS, VmAction, VmState, next_state


@pytest.mark.parametrize(("action", "current", "expected"), [
    (VmAction.STOP, VmState.RUNNING, VmState.STOPPING),
    (VmAction.STOP, VmState.READY, VmState.STOPPING),
    (VmAction.START, VmState.STOPPED, VmState.STARTING),
    (VmAction.PAUSE, VmState.READY, VmState.PAUSED),
    (VmAction.RESUME, VmState.PAUSED, VmState.RUNNING),
    (VmAction.FORCE_STOP, VmState.PAUSED, VmState.STOPPING),
    (VmAction.DELETE, VmState.ERROR, VmState.DELETING),
])
def test_legal_actions_record_their_transitional_state(
        action: VmAction, current: VmState, expected: VmState) -> None:
    assert next_state(action, current) is expected


@pytest.mark.parametrize(("action", "current"), [
    (VmAction.START, VmState.RUNNING),
    (VmAction.STOP, VmState.STOPPED),
    (VmAction.RESUME, VmState.RUNNING),
    (VmAction.REBOOT, VmState.PAUSED),
    (VmAction.DELETE, VmState.DELETING),
    (VmAction.PAUSE, VmState.PENDING),
])
def test_illegal_actions_are_refused(action: VmAction, current: VmState) -> None:
    assert next_state(action, current) is None


def test_every_action_has_a_row_and_the_architecture_doc_lists_it() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert set(TRANSITIONS) == set(VmAction)
    for action in VmAction:
        assert f"| {action.value} |" in doc
