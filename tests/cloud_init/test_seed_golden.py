"""The seed ISO's files for fixed VM records, checked against golden files: any change to what a
guest's cloud-init reads shows up as a reviewed diff (``pytest --update-golden`` rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from limiquantix.common.vms import CloudInitRequest
from limiquantix.node_agent.seed.nocloud import seed_files
from tests.support.cloud_init import make_record
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden"
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH300z27yaGw+sZN4N4J4PHnv+6vCTD7PsRyyP71iQ4P "
       "alice@example")
NETWORK_CONFIG = """version: 2
ethernets:
  eth0:
    dhcp4: true
"""
CASES = {
    # Keys only: the generated #cloud-config alone, plus a network-config.
    "keys": CloudInitRequest(ssh_authorized_keys=(KEY,), network_config=NETWORK_CONFIG),
    # Custom user-data: a MIME multipart, the user's script first, the generated part last.
    "custom": CloudInitRequest(user="ops", ssh_authorized_keys=(KEY,), hostname="db-1",
                               user_data="#!/bin/sh\necho hello > /tmp/hello\n",
                               locale="en_US.UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_seed_files_match_golden_files(case: str, update_golden: bool) -> None:
    record = make_record(CASES[case], vm_id="0f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
                         instance_id="i-0f3c2a4e")
    files = seed_files(record)
    for name, content in files.items():
        assert_golden(GOLDEN / case / name, content.decode(), update_golden)
    golden_names = {p.name for p in (GOLDEN / case).iterdir()}
    assert golden_names == set(files), "a seed file was added or dropped"
