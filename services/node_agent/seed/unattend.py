"""Windows answer files, a pure function of :class:`UnattendSpec` (golden files per flow).

Two flows:
- ``install``: ``Autounattend.xml`` at the root of the seed media; Windows Setup finds it there
  by its implicit search in the windowsPE pass. It partitions disk 0 for UEFI (EFI 100 MB FAT32,
  MSR 16 MB, Windows NTFS on the rest), installs to partition 3, and loads the virtio-win storage
  and network drivers from the drivers CD-ROM when the VM has one.
- ``sysprep``: ``unattend.xml`` for a generalized image: only the specialize and oobeSystem
  passes.
Both then set the computer name and time zone (specialize), open RDP when asked (setting and
firewall group), join an Active Directory domain when asked (UnattendedJoin), and in oobeSystem:
locale and keyboard, the OOBE screens skipped, the built-in Administrator's password and a local
administrator account, one automatic logon so the first-logon commands run (WinRM's listener and
firewall rule when asked, then the user's).

Passes appear in the order Windows Setup runs them (windowsPE, specialize, oobeSystem);
components and their settings in the order Windows System Image Manager writes them
(alphabetical), so a file edited there diffs cleanly against ours.

Passwords are only ever here as unattend.xml's own encoding (``PlainText`` false): base64 of the
UTF-16LE password followed by the element name ("AdministratorPassword" or "Password"). That is
an obfuscation Windows reverses, not a hash: whoever reads the seed reads the password
(docs/windows.md says where it lives and for how long).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from typing import Literal

import msgspec

NS = "urn:schemas-microsoft-com:unattend"
WCM = "http://schemas.microsoft.com/WMIConfig/2002/State"
Flow = Literal["install", "sysprep"]
PASS_ORDER = ("windowsPE", "offlineServicing", "generalize", "specialize", "auditSystem",
              "auditUser", "oobeSystem")
FILE_NAMES: dict[Flow, str] = {"install": "Autounattend.xml", "sysprep": "unattend.xml"}
# virtio-win's layout: <driver>\<windows version>\amd64. WinPE gives CD-ROMs letters in port
# order (seed sda, install ISO sdb, drivers sdc: D:, E:, F:), which nothing guarantees: every
# candidate letter is listed, Setup skips paths that do not exist.
DRIVER_LETTERS = ("D:\\", "E:\\", "F:\\")
VIRTIO_DRIVERS = ("viostor", "vioscsi", "NetKVM", "Balloon", "vioserial")
RDP_FIREWALL_GROUP = "@FirewallAPI.dll,-28752"  # "Remote Desktop", language-neutral


class UnattendSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the answer file depends on; passwords already in unattend.xml's encoding."""

    flow: Flow
    computer_name: str
    admin_user: str = "admin"
    admin_password_encoded: str = ""  # encode_password(p, "AdministratorPassword")
    user_password_encoded: str = ""  # encode_password(p, "Password"): the local admin, autologon
    timezone: str = "UTC"
    locale: str = "en-US"
    keyboard: str = ""  # InputLocale; "" = the locale's
    product_key: str = ""
    enable_rdp: bool = True
    enable_winrm: bool = False
    first_logon_commands: tuple[str, ...] = ()
    drivers_dirs: tuple[str, ...] = ()  # DRIVER_LETTERS when virtio-win is attached (install)
    windows_version: str = "w11"  # virtio-win's folder name: w10, w11, 2k19, 2k22 ...
    join_domain: str = ""  # Active Directory DNS domain to join at specialize; "" = none
    join_ou: str = ""
    join_user: str = ""  # 'user', 'DOMAIN\\user' or 'user@domain'
    join_password: str = ""  # UnattendedJoin takes it as plain text (docs/windows.md)


def encode_password(password: str, element: Literal["AdministratorPassword", "Password"]) -> str:
    """unattend.xml's ``PlainText=false`` form of ``password`` for ``element``."""
    return base64.b64encode((password + element).encode("utf-16-le")).decode()


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{NS}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _component(settings: ET.Element, name: str) -> ET.Element:
    return _sub(settings, "component", name=name, processorArchitecture="amd64",
                publicKeyToken="31bf3856ad364e35", language="neutral", versionScope="nonSxS")


def _added(parent: ET.Element, tag: str, key: str | None = None) -> ET.Element:
    attrs = {f"{{{WCM}}}action": "add"}
    if key is not None:
        attrs[f"{{{WCM}}}keyValue"] = key
    return _sub(parent, tag, **attrs)


def _international(settings: ET.Element, spec: UnattendSpec, name: str) -> None:
    component = _component(settings, name)
    _sub(component, "InputLocale", spec.keyboard or spec.locale)
    if name.endswith("WinPE"):
        setup_ui = _sub(component, "SetupUILanguage")
        _sub(setup_ui, "UILanguage", spec.locale)
    _sub(component, "SystemLocale", spec.locale)
    _sub(component, "UILanguage", spec.locale)
    _sub(component, "UserLocale", spec.locale)


def _drivers(settings: ET.Element, spec: UnattendSpec) -> None:
    component = _component(settings, "Microsoft-Windows-PnpCustomizationsWinPE")
    paths = _sub(component, "DriverPaths")
    candidates = [f"{root}{driver}\\{spec.windows_version}\\amd64"
                  for root in spec.drivers_dirs for driver in VIRTIO_DRIVERS]
    for number, path in enumerate(candidates, start=1):
        entry = _added(paths, "PathAndCredentials", str(number))
        _sub(entry, "Path", path)


def _partition(parent: ET.Element, order: int, kind: str, size: int | None) -> None:
    partition = _added(parent, "CreatePartition")
    if size is None:
        _sub(partition, "Extend", "true")
    _sub(partition, "Order", str(order))
    if size is not None:
        _sub(partition, "Size", str(size))
    _sub(partition, "Type", kind)


def _modify(parent: ET.Element, order: int, fmt: str | None, label: str | None,
            letter: str | None) -> None:
    partition = _added(parent, "ModifyPartition")
    if fmt:
        _sub(partition, "Format", fmt)
    if label:
        _sub(partition, "Label", label)
    if letter:
        _sub(partition, "Letter", letter)
    _sub(partition, "Order", str(order))
    _sub(partition, "PartitionID", str(order))


def _setup(settings: ET.Element, spec: UnattendSpec) -> None:
    component = _component(settings, "Microsoft-Windows-Setup")
    disk = _added(_sub(component, "DiskConfiguration"), "Disk")
    creates = _sub(disk, "CreatePartitions")
    _partition(creates, 1, "EFI", 100)
    _partition(creates, 2, "MSR", 16)
    _partition(creates, 3, "Primary", None)
    _sub(disk, "DiskID", "0")
    modifies = _sub(disk, "ModifyPartitions")
    _modify(modifies, 1, "FAT32", "System", None)
    _modify(modifies, 2, None, None, None)
    _modify(modifies, 3, "NTFS", "Windows", "C")
    _sub(disk, "WillWipeDisk", "true")
    install_to = _sub(_sub(_sub(component, "ImageInstall"), "OSImage"), "InstallTo")
    _sub(install_to, "DiskID", "0")
    _sub(install_to, "PartitionID", "3")
    user_data = _sub(component, "UserData")
    _sub(user_data, "AcceptEula", "true")
    if spec.product_key:
        _sub(_sub(user_data, "ProductKey"), "Key", spec.product_key)


def _windows_pe(root: ET.Element, spec: UnattendSpec) -> None:
    settings = _sub(root, "settings", **{"pass": "windowsPE"})
    _international(settings, spec, "Microsoft-Windows-International-Core-WinPE")
    if spec.drivers_dirs:
        _drivers(settings, spec)
    _setup(settings, spec)


def _join_credentials(spec: UnattendSpec) -> tuple[str, str]:
    """(domain, user) of the join account: 'DOM\\user' and 'user@dom' name their own domain."""
    if "\\" in spec.join_user:
        domain, user = spec.join_user.split("\\", 1)
        return domain, user
    if "@" in spec.join_user:
        user, domain = spec.join_user.rsplit("@", 1)
        return domain, user
    return spec.join_domain, spec.join_user


def _specialize(root: ET.Element, spec: UnattendSpec) -> None:
    settings = _sub(root, "settings", **{"pass": "specialize"})
    shell = _component(settings, "Microsoft-Windows-Shell-Setup")
    _sub(shell, "ComputerName", spec.computer_name)
    if spec.product_key and spec.flow == "sysprep":
        _sub(shell, "ProductKey", spec.product_key)
    _sub(shell, "TimeZone", spec.timezone)
    if spec.enable_rdp:
        session = _component(settings, "Microsoft-Windows-TerminalServices-LocalSessionManager")
        _sub(session, "fDenyTSConnections", "false")
        rdp = _component(settings,
                         "Microsoft-Windows-TerminalServices-RDP-WinStationExtensions")
        _sub(rdp, "UserAuthentication", "1")  # Network Level Authentication
    if spec.join_domain:
        identification = _sub(_component(settings, "Microsoft-Windows-UnattendedJoin"),
                              "Identification")
        credentials = _sub(identification, "Credentials")
        domain, user = _join_credentials(spec)
        _sub(credentials, "Domain", domain)
        _sub(credentials, "Password", spec.join_password)
        _sub(credentials, "Username", user)
        _sub(identification, "JoinDomain", spec.join_domain)
        if spec.join_ou:
            _sub(identification, "MachineObjectOU", spec.join_ou)
    if spec.enable_rdp:
        firewall = _component(settings, "Networking-MPSSVC-Svc")
        group = _added(_sub(firewall, "FirewallGroups"), "FirewallGroup", "RemoteDesktop")
        _sub(group, "Active", "true")
        _sub(group, "Group", RDP_FIREWALL_GROUP)
        _sub(group, "Profile", "all")


def _commands(spec: UnattendSpec) -> list[tuple[str, str]]:
    commands: list[tuple[str, str]] = []
    if spec.enable_winrm:
        commands += [
            ("cmd.exe /c winrm quickconfig -quiet -force", "WinRM listener (HTTP 5985)"),
            ('netsh advfirewall firewall add rule name="WinRM HTTP" dir=in action=allow '
             "protocol=TCP localport=5985", "WinRM firewall rule"),
        ]
    commands += [(command, f"user command {n}")
                 for n, command in enumerate(spec.first_logon_commands, start=1)]
    return commands


def _oobe(root: ET.Element, spec: UnattendSpec) -> None:
    settings = _sub(root, "settings", **{"pass": "oobeSystem"})
    _international(settings, spec, "Microsoft-Windows-International-Core")
    shell = _component(settings, "Microsoft-Windows-Shell-Setup")
    commands = _commands(spec)
    if spec.user_password_encoded and commands:  # one logon so FirstLogonCommands run now
        logon = _sub(shell, "AutoLogon")
        _sub(logon, "Enabled", "true")
        _sub(logon, "LogonCount", "1")
        password = _sub(logon, "Password")
        _sub(password, "PlainText", "false")
        _sub(password, "Value", spec.user_password_encoded)
        _sub(logon, "Username", spec.admin_user)
    if commands:
        first = _sub(shell, "FirstLogonCommands")
        for order, (command, description) in enumerate(commands, start=1):
            step = _added(first, "SynchronousCommand")
            _sub(step, "CommandLine", command)
            _sub(step, "Description", description)
            _sub(step, "Order", str(order))
    oobe = _sub(shell, "OOBE")
    for name in ("HideEULAPage", "HideLocalAccountScreen", "HideOEMRegistrationScreen",
                 "HideOnlineAccountScreens", "HideWirelessSetupInOOBE"):
        _sub(oobe, name, "true")
    _sub(oobe, "ProtectYourPC", "3")
    _sub(shell, "TimeZone", spec.timezone)
    accounts = _sub(shell, "UserAccounts")
    if spec.admin_password_encoded:
        admin = _sub(accounts, "AdministratorPassword")
        _sub(admin, "PlainText", "false")
        _sub(admin, "Value", spec.admin_password_encoded)
    if spec.user_password_encoded:
        local = _added(_sub(accounts, "LocalAccounts"), "LocalAccount")
        _sub(local, "DisplayName", spec.admin_user)
        _sub(local, "Group", "Administrators")
        _sub(local, "Name", spec.admin_user)
        password = _sub(local, "Password")
        _sub(password, "PlainText", "false")
        _sub(password, "Value", spec.user_password_encoded)


def render(spec: UnattendSpec) -> str:
    """The answer file of ``spec`` (deterministic: same spec, same bytes)."""
    ET.register_namespace("", NS)
    ET.register_namespace("wcm", WCM)
    root = ET.Element(f"{{{NS}}}unattend")
    if spec.flow == "install":
        _windows_pe(root, spec)
    _specialize(root, spec)
    _oobe(root, spec)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        root, encoding="unicode") + "\n"


def answer_files(spec: UnattendSpec) -> dict[str, bytes]:
    """The seed media's file for ``spec``'s flow (name -> UTF-8 bytes)."""
    return {FILE_NAMES[spec.flow]: render(spec).encode()}
