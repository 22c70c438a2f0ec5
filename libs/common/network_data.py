"""OpenStack ``network_data.json`` from our network-config version 2 (the config drive's form).

One function, used twice: by the gateway to refuse what a config drive cannot carry (a 422 at
create time, not a guest without network), and by the node to write the file.

What translates (the VM has exactly one NIC, whose MAC the node chooses):
- ``ethernets``: each a ``phy`` link; its MAC is ``match.macaddress`` when given, else the VM's
  NIC (so at most one ethernet may leave the MAC out). ``set-name`` becomes the link's ``name``,
  ``mtu`` its MTU.
- ``vlans``: ``vlan`` links on the link named by ``link`` (``id`` is the VLAN id).
- per device: ``dhcp4``/``dhcp6`` -> ``ipv4_dhcp``/``ipv6_dhcp`` networks; each ``addresses``
  entry (CIDR) -> an ``ipv4``/``ipv6`` network with ``gateway4``/``gateway6`` and ``routes``
  (``to``/``via``) of its family as routes; ``nameservers.addresses`` -> global ``dns`` services.
Bonds, bridges, wifis, tunnels, vrfs and modems have no such translation here: use NoCloud.
cloud-init (``openstack.convert_net_json``) finds the interface by MAC, so names never matter.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import yaml

from limiquantix.common.cloud_init_errors import InvalidNetworkConfig

_TRANSLATED = frozenset({"ethernets", "vlans"})
_DEFAULT_ROUTE = {4: ("0.0.0.0", "0.0.0.0"), 6: ("::", "::")}


def _fault(message: str) -> InvalidNetworkConfig:
    return InvalidNetworkConfig(f"network_config (config drive): {message}")


def _routes(settings: dict[str, Any], version: int) -> list[dict[str, str]]:
    routes: list[dict[str, str]] = []
    gateway = settings.get(f"gateway{version}")
    if gateway:
        network, netmask = _DEFAULT_ROUTE[version]
        routes.append({"network": network, "netmask": netmask, "gateway": str(gateway)})
    for route in settings.get("routes") or ():
        if not isinstance(route, dict) or "to" not in route or "via" not in route:
            raise _fault("each route needs 'to' and 'via'")
        to = "0.0.0.0/0" if route["to"] == "default" and version == 4 else route["to"]
        to = "::/0" if to == "default" else to
        try:
            target = ipaddress.ip_network(str(to), strict=False)
        except ValueError:
            raise _fault(f"route 'to' {to!r} is not a network") from None
        if target.version == version:
            routes.append({"network": str(target.network_address),
                           "netmask": str(target.netmask), "gateway": str(route["via"])})
    return routes


def _networks(link_id: str, settings: dict[str, Any], first: int) -> list[dict[str, Any]]:
    networks: list[dict[str, Any]] = []

    def add(network: dict[str, Any]) -> None:
        networks.append({"id": f"network{first + len(networks)}", "link": link_id, **network})

    for version in (4, 6):
        if settings.get(f"dhcp{version}"):
            add({"type": f"ipv{version}_dhcp"})
    routed: set[int] = set()
    for address in settings.get("addresses") or ():
        try:
            interface = ipaddress.ip_interface(str(address))
        except ValueError:
            raise _fault(f"address {address!r} is not an address with a prefix "
                         "(e.g. 192.0.2.10/24)") from None
        network: dict[str, Any] = {
            "type": f"ipv{interface.version}", "ip_address": str(interface.ip),
            "netmask": str(interface.network.netmask),
        }
        if interface.version not in routed:  # routes once per family, on its first address
            network["routes"] = _routes(settings, interface.version)
            routed.add(interface.version)
        add(network)
    return networks


def _dns(settings: dict[str, Any], seen: list[str]) -> None:
    nameservers = settings.get("nameservers") or {}
    if not isinstance(nameservers, dict):
        raise _fault("'nameservers' must be a mapping with 'addresses'")
    for address in nameservers.get("addresses") or ():
        if str(address) not in seen:
            seen.append(str(address))


def network_data(text: str, nic_mac: str) -> dict[str, Any] | None:
    """``network_data.json`` of a validated v2 ``text`` (None when empty); raises
    InvalidNetworkConfig for what a config drive cannot carry."""
    if not text.strip():
        return None
    data = yaml.safe_load(text)
    config: dict[str, Any] = data.get("network", data)
    other = sorted(k for k in config if k not in _TRANSLATED | {"version", "renderer"})
    if other:
        raise _fault(f"{other} cannot be written as network_data.json; a config drive carries "
                     "ethernets and vlans only: use datasource 'nocloud' for these")
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    dns: list[str] = []
    unmatched = 0
    for link_id, settings in (config.get("ethernets") or {}).items():
        match = settings.get("match") or {}
        mac = match.get("macaddress") if isinstance(match, dict) else None
        unmatched += mac is None
        link: dict[str, Any] = {"id": str(link_id), "type": "phy",
                                "ethernet_mac_address": str(mac or nic_mac).lower()}
        if settings.get("set-name"):
            link["name"] = str(settings["set-name"])
        if settings.get("mtu"):
            link["mtu"] = int(settings["mtu"])
        links.append(link)
        networks += _networks(str(link_id), settings, len(networks))
        _dns(settings, dns)
    if unmatched > 1:
        raise _fault("the VM has one NIC: at most one ethernet may omit match.macaddress")
    for link_id, settings in (config.get("vlans") or {}).items():
        if "id" not in settings or "link" not in settings:
            raise _fault(f"vlan {link_id!r} needs 'id' and 'link'")
        parent = next((x for x in links if x["id"] == str(settings["link"])), None)
        if parent is None:
            raise _fault(f"vlan {link_id!r}: link {settings['link']!r} is not an ethernet")
        links.append({"id": str(link_id), "type": "vlan", "vlan_link": parent["id"],
                      "vlan_id": int(settings["id"]),
                      "vlan_mac_address": parent["ethernet_mac_address"]})
        networks += _networks(str(link_id), settings, len(networks))
        _dns(settings, dns)
    return {"links": links, "networks": networks,
            "services": [{"type": "dns", "address": a} for a in dns]}
