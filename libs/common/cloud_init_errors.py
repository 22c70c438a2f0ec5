"""Why a cloud-init request was refused: each a 422 with a stable code and where the fault is."""

from __future__ import annotations

from limiquantix.common.errors import InvalidRequest


class InvalidCloudInit(InvalidRequest):
    """Base of every cloud-init validation error."""

    code = "invalid_cloud_init"


class InvalidSshKey(InvalidCloudInit):
    """An ``ssh_authorized_keys`` entry is not a public key (details: ``index``, ``reason``)."""

    code = "invalid_ssh_key"
    default_hint = (
        "Paste the whole public key line, e.g. the content of ~/.ssh/id_ed25519.pub "
        "('ssh-ed25519 AAAA... comment'), one key per entry."
    )


class InvalidUserData(InvalidCloudInit):
    """Custom user-data is not ``#cloud-config`` YAML, a ``#!`` script or MIME multipart.

    Details: ``line`` and ``column`` (1-based) when the fault has a place.
    """

    code = "invalid_user_data"
    default_hint = (
        "Start user-data with '#cloud-config' followed by a YAML mapping, or with '#!' for a "
        "script, or send a MIME multipart document; fix the YAML at the line and column given."
    )


class InvalidVendorData(InvalidUserData):
    """Vendor-data follows the same formats as user-data and failed the same checks."""

    code = "invalid_vendor_data"


class InvalidNetworkConfig(InvalidCloudInit):
    """``network_config`` is not a valid network-config version 2 document."""

    code = "invalid_network_config"
    default_hint = (
        "Send network-config version 2 YAML: 'network: {version: 2, ethernets: {...}}' or "
        "'version: 2' at the top level; see cloud-init's 'Networking config Version 2'."
    )


class InvalidPassword(InvalidCloudInit):
    """The password is empty or too long to be a password."""

    code = "invalid_password"
    default_hint = "Send a non-empty password of at most 1024 characters, or omit it."
