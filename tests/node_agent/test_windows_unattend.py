"""Windows answer files: golden files per flow, well-formed, passes in Windows Setup's order,
components and settings in Windows System Image Manager's order, settings round-tripped, the
password only in unattend.xml's encoding; and NetBIOS computer names checked with a clear 422."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from limiquantix.common.windows import InvalidComputerName, computer_name
from limiquantix.node_agent.seed.unattend import (
    DRIVER_LETTERS,
    NS,
    PASS_ORDER,
    UnattendSpec,
    answer_files,
    encode_password,
    render,
)
from tests.support.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden" / "unattend"
PASSWORD = "Pa55 wörd!"
JOIN_PASSWORD = "join only"
Q = f"{{{NS}}}"

CASES = {
    "install": UnattendSpec(
        flow="install", computer_name="WIN-BUILD-01", admin_user="ops",
        admin_password_encoded=encode_password(PASSWORD, "AdministratorPassword"),
        user_password_encoded=encode_password(PASSWORD, "Password"),
        timezone="W. Europe Standard Time", locale="de-DE", keyboard="0407:00000407",
        product_key="VK7JG-NPHTM-C97JM-9MPGT-3V66T", enable_winrm=True,
        first_logon_commands=("powershell -Command Set-ExecutionPolicy RemoteSigned",),
        drivers_dirs=DRIVER_LETTERS, windows_version="w11",
    ),
    "sysprep": UnattendSpec(
        flow="sysprep", computer_name="web-1",
        admin_password_encoded=encode_password(PASSWORD, "AdministratorPassword"),
        user_password_encoded=encode_password(PASSWORD, "Password"),
        join_domain="corp.example.com", join_user="joiner@ad.example.com",
        join_password=JOIN_PASSWORD, join_ou="OU=Web,DC=corp,DC=example,DC=com",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_answer_file_matches_golden_file(case: str, update_golden: bool) -> None:
    (name, content), = answer_files(CASES[case]).items()
    assert name == {"install": "Autounattend.xml", "sysprep": "unattend.xml"}[case]
    assert_golden(GOLDEN / f"{case}.xml", content.decode(), update_golden)


def _passes(xml: str) -> list[str]:
    root = ET.fromstring(xml)  # well-formed, or this raises
    assert root.tag == f"{Q}unattend"
    return [s.get("pass", "") for s in root.findall(f"{Q}settings")]


def test_passes_are_those_of_each_flow_in_setup_order() -> None:
    assert _passes(render(CASES["install"])) == ["windowsPE", "specialize", "oobeSystem"]
    assert _passes(render(CASES["sysprep"])) == ["specialize", "oobeSystem"]
    for case in CASES.values():
        passes = _passes(render(case))
        assert passes == sorted(passes, key=PASS_ORDER.index)


def _check_order(element: ET.Element) -> None:
    names = [c.get("name") or c.tag for c in element]
    if all(c.tag == f"{Q}component" for c in element) or len({c.tag for c in element}) == len(
            names):
        assert names == sorted(names), f"{element.tag}: {names}"
    for child in element:
        _check_order(child)


@pytest.mark.parametrize("case", sorted(CASES))
def test_components_and_settings_are_in_wsim_order(case: str) -> None:
    for settings in ET.fromstring(render(CASES[case])):
        _check_order(settings)


def _text(root: ET.Element, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path.replace("/", f"/{Q}").replace("@", ""))]


def test_settings_round_trip_through_the_xml() -> None:
    spec = CASES["install"]
    root = ET.fromstring(render(spec))
    setup = f".//{Q}component[@name='Microsoft-Windows-Setup']"
    assert root.find(f"{setup}//{Q}ProductKey/{Q}Key").text == spec.product_key  # type: ignore[union-attr]
    types = [e.text for e in root.iterfind(f"{setup}//{Q}CreatePartition/{Q}Type")]
    assert types == ["EFI", "MSR", "Primary"]
    assert [e.text for e in root.iter(f"{Q}ComputerName")] == ["WIN-BUILD-01"]
    assert {e.text for e in root.iter(f"{Q}TimeZone")} == {"W. Europe Standard Time"}
    assert {e.text for e in root.iter(f"{Q}InputLocale")} == {"0407:00000407"}
    assert {e.text for e in root.iter(f"{Q}UserLocale")} == {"de-DE"}
    paths = [e.text or "" for e in root.iter(f"{Q}Path")]
    assert "E:\\viostor\\w11\\amd64" in paths and "E:\\NetKVM\\w11\\amd64" in paths
    commands = [e.text or "" for e in root.iter(f"{Q}CommandLine")]
    assert "winrm quickconfig" in commands[0] and commands[-1] == spec.first_logon_commands[0]
    assert [e.text for e in root.iter(f"{Q}Order")
            if e.text and any(c.find(f"{Q}Order") is e
                              for c in root.iter(f"{Q}SynchronousCommand"))] == ["1", "2", "3"]
    assert root.find(f".//{Q}fDenyTSConnections").text == "false"  # type: ignore[union-attr]


def _decode(value: str, element: str) -> str:
    text = base64.b64decode(value).decode("utf-16-le")
    assert text.endswith(element)
    return text[: -len(element)]


def test_domain_join_is_in_specialize_with_the_accounts_own_domain() -> None:
    root = ET.fromstring(render(CASES["sysprep"]))
    (specialize,) = [s for s in root if s.get("pass") == "specialize"]
    join = specialize.find(f"{Q}component[@name='Microsoft-Windows-UnattendedJoin']")
    assert join is not None
    assert _text(join, "./Identification/Credentials/Domain") == ["ad.example.com"]
    assert _text(join, "./Identification/Credentials/Username") == ["joiner"]
    # UnattendedJoin has no encoded form: the join account's password is plain text here
    # (docs/windows.md: use an account that may only join computers).
    assert _text(join, "./Identification/Credentials/Password") == [JOIN_PASSWORD]
    assert _text(join, "./Identification/JoinDomain") == ["corp.example.com"]
    assert _text(join, "./Identification/MachineObjectOU") == ["OU=Web,DC=corp,DC=example,DC=com"]
    plain = UnattendSpec(flow="sysprep", computer_name="web-1", join_domain="corp.example.com",
                         join_user="CORP\\joiner", join_password="x")
    credentials = ET.fromstring(render(plain)).find(f".//{Q}Credentials")
    assert credentials is not None
    assert _text(credentials, "./Domain") == ["CORP"] and _text(credentials, "./Username") == [
        "joiner"]
    assert ET.fromstring(render(CASES["install"])).find(f".//{Q}Credentials") is None


def test_passwords_are_only_in_unattend_encoding_and_decode_to_the_password() -> None:
    xml = render(CASES["install"])
    assert PASSWORD not in xml
    root = ET.fromstring(xml)
    admin = root.find(f".//{Q}AdministratorPassword")
    assert admin is not None and admin.find(f"{Q}PlainText").text == "false"  # type: ignore[union-attr]
    assert _decode(admin.find(f"{Q}Value").text or "", "AdministratorPassword") == PASSWORD  # type: ignore[union-attr]
    for password in root.iter(f"{Q}Password"):
        assert _decode(password.find(f"{Q}Value").text or "", "Password") == PASSWORD  # type: ignore[union-attr]


def test_without_rdp_or_commands_the_answer_file_leaves_them_out() -> None:
    spec = UnattendSpec(flow="sysprep", computer_name="db", enable_rdp=False)
    root = ET.fromstring(render(spec))
    assert root.find(f".//{Q}fDenyTSConnections") is None
    assert root.find(f".//{Q}FirstLogonCommands") is None
    assert root.find(f".//{Q}AutoLogon") is None


@pytest.mark.parametrize(("requested", "vm_name", "reason"), [
    ("", "a-very-long-vm-name", "is 19 characters"),
    ("web_1", "x", "letters, digits and '-'"),
    ("12345", "x", "only digits"),
    ("-web", "x", "start or end"),
])
def test_bad_computer_names_are_refused_saying_why(requested: str, vm_name: str,
                                                   reason: str) -> None:
    with pytest.raises(InvalidComputerName, match=reason) as caught:
        computer_name(requested, vm_name)
    assert caught.value.status == 422
    assert ("windows.computer_name" in caught.value.message) == bool(requested)


def test_computer_name_defaults_to_the_vm_name() -> None:
    assert computer_name("", "web-1") == "web-1"
    assert computer_name("SQL01", "web-1") == "SQL01"
