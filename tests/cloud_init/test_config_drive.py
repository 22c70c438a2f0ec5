"""The config drive (``datasource: configdrive``): golden files, the ISO's label and layout, the
gateway's refusals, and cloud-init 22.4's own ConfigDrive reader and network_data.json
translation run on what we write (the real guest test in tests/guest is the outside judge)."""

from __future__ import annotations

import email
import io
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pycdlib
import pytest

from limiquantix.common.cloud_init import prepare
from limiquantix.common.cloud_init_errors import InvalidNetworkConfig
from limiquantix.common.vms import CloudInitRequest
from limiquantix.node_agent.domain_xml import mac_for
from limiquantix.node_agent.seed.config_drive import LABEL, config_drive_files, seed_media
from limiquantix.node_agent.seed.iso import build_seed_iso
from limiquantix.node_agent.seed.nocloud import user_data
from tests.support.cloud_init import make_record
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden" / "configdrive"
VM_ID = "0f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH300z27yaGw+sZN4N4J4PHnv+6vCTD7PsRyyP71iQ4P "
       "alice@example")
STATIC = """network:
  version: 2
  ethernets:
    eth0:
      addresses: [192.0.2.10/24, "2001:db8::10/64"]
      gateway4: 192.0.2.1
      routes: [{to: 198.51.100.0/24, via: 192.0.2.254}]
      nameservers: {addresses: [192.0.2.53]}
  vlans:
    vlan7:
      id: 7
      link: eth0
      dhcp4: true
"""
CASES = {
    "dhcp": CloudInitRequest(datasource="configdrive", ssh_authorized_keys=(KEY,),
                             network_config="version: 2\nethernets:\n  eth0:\n    dhcp4: true\n"),
    "static": CloudInitRequest(datasource="configdrive", ssh_authorized_keys=(KEY,),
                               hostname="db-1", network_config=STATIC, password="s3cret pass",
                               vendor_data="#cloud-config\nruncmd: [echo vendor]\n",
                               user_data="#!/bin/sh\necho hello\n"),
}


def _record(case: str) -> Any:
    return make_record(CASES[case], vm_id=VM_ID, instance_id="i-0f3c2a4e")


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_drive_files_match_golden_files(case: str, update_golden: bool) -> None:
    record = _record(case)
    files = config_drive_files(record)
    # user_data is the NoCloud user-data byte for byte (its golden files cover it); the password
    # hash is salted, so only the JSON files are golden here.
    assert files.pop("openstack/latest/user_data") == user_data(record)
    for name, content in files.items():
        assert_golden(GOLDEN / case / name, content.decode(), update_golden)
    golden = {str(p.relative_to(GOLDEN / case)) for p in (GOLDEN / case).rglob("*.json")}
    assert golden == set(files), "a config drive file was added or dropped"


def test_config_drive_never_holds_the_password_only_its_hash_in_user_data() -> None:
    record = _record("static")
    files = config_drive_files(record)
    message = email.message_from_bytes(files.pop("openstack/latest/user_data"))
    parts = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
    everything = b"".join([*files.values(), *parts])
    assert b"s3cret pass" not in everything
    assert b"admin_pass" not in files["openstack/latest/meta_data.json"]
    assert record.cloud_init.password_hash.encode() in everything


def test_config_drive_iso_is_labelled_config_2_with_the_openstack_tree(tmp_path: Path) -> None:
    files, label = seed_media(_record("static"))
    assert label == LABEL == "config-2"
    iso_file = tmp_path / "seed.iso"
    iso_file.write_bytes(build_seed_iso(files, label))
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso_file)], capture_output=True,
                          text=True, check=True).stdout
    assert "Volume id: config-2" in info
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_file))
    try:
        for name, content in files.items():
            for kind in ("rr_path", "joliet_path"):
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, **{kind: "/" + name})
                assert out.getvalue() == content, (kind, name)
    finally:
        iso.close()


def test_nocloud_stays_the_default_seed() -> None:
    files, label = seed_media(make_record(CloudInitRequest(ssh_authorized_keys=(KEY,))))
    assert label == "cidata"
    assert set(files) == {"user-data", "meta-data"}


def test_gateway_refuses_network_config_a_config_drive_cannot_carry() -> None:
    bond = "version: 2\nethernets: {eth0: {}}\nbonds: {bond0: {interfaces: [eth0]}}\n"
    prepare(CloudInitRequest(network_config=bond), vm_name="a")  # NoCloud carries it
    with pytest.raises(InvalidNetworkConfig, match="ethernets and vlans only"):
        prepare(CloudInitRequest(network_config=bond, datasource="configdrive"), vm_name="a")
    two = "version: 2\nethernets: {a: {dhcp4: true}, b: {dhcp4: true}}\n"
    with pytest.raises(InvalidNetworkConfig, match="one NIC"):
        prepare(CloudInitRequest(network_config=two, datasource="configdrive"), vm_name="a")
    bad = "version: 2\nethernets: {eth0: {addresses: [192.0.2.300/24]}}\n"
    with pytest.raises(InvalidNetworkConfig, match="not an address"):
        prepare(CloudInitRequest(network_config=bad, datasource="configdrive"), vm_name="a")


def _write_tree(files: dict[str, bytes], root: Path) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


@pytest.fixture
def datasources(cloudinit: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """cloud-init's datasource modules; ``configobj`` (used only by the sysconfig renderer,
    which nothing here calls) is an empty module when absent."""
    if "configobj" not in sys.modules:
        stub = types.ModuleType("configobj")
        stub.ConfigObj = type("ConfigObj", (dict,), {})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "configobj", stub)
    from cloudinit import sources

    return sources


def test_cloud_init_reads_the_config_drive_as_we_mean_it(datasources: Any,
                                                         tmp_path: Path) -> None:
    """cloud-init 22.4's read_config_drive, convert_vendordata and convert_net_json."""
    sources = datasources
    from cloudinit.sources.DataSourceConfigDrive import read_config_drive
    from cloudinit.sources.helpers.openstack import convert_net_json

    record = _record("static")
    _write_tree(config_drive_files(record), tmp_path)
    results = read_config_drive(str(tmp_path))
    metadata = results["metadata"]
    assert metadata["instance-id"] == "i-0f3c2a4e"
    assert metadata["local-hostname"] == "db-1"
    assert list(metadata["public_keys"].values()) == [KEY]
    assert results["userdata"] == user_data(record)
    assert sources.convert_vendordata(results["vendordata"]) == (
        "#cloud-config\nruncmd: [echo vendor]\n")
    mac = mac_for(VM_ID)
    network = convert_net_json(results["networkdata"], known_macs={mac: "eth0"})
    by_name = {c.get("name"): c for c in network["config"]}
    eth0 = by_name["eth0"]
    assert eth0["type"] == "physical" and eth0["mac_address"] == mac
    static4, static6 = eth0["subnets"]
    assert (static4["type"], static4["address"], static4["netmask"]) == (
        "static", "192.0.2.10", "255.255.255.0")
    assert {(r["network"], r["gateway"]) for r in static4["routes"]} == {
        ("0.0.0.0", "192.0.2.1"), ("198.51.100.0", "192.0.2.254")}
    assert (static6["type"], static6["address"]) == ("static6", "2001:db8::10")
    vlan = by_name["eth0.7"]
    assert (vlan["type"], vlan["vlan_id"], vlan["vlan_link"]) == ("vlan", 7, "eth0")
    assert vlan["subnets"] == [{"type": "dhcp4"}]
    assert by_name[None] == {"type": "nameserver", "address": "192.0.2.53"}


def test_without_network_config_cloud_init_falls_back_to_dhcp(datasources: Any,
                                                              tmp_path: Path) -> None:
    from cloudinit.sources.DataSourceConfigDrive import read_config_drive

    record = make_record(CloudInitRequest(datasource="configdrive"), vm_id=VM_ID)
    files = config_drive_files(record)
    assert "openstack/latest/network_data.json" not in files
    assert json.loads(files["openstack/latest/vendor_data.json"]) == {}
    _write_tree(files, tmp_path)
    results = read_config_drive(str(tmp_path))
    assert results["metadata"]["instance-id"] == VM_ID
    assert results.get("networkdata") is None
