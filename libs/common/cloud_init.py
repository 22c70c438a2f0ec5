"""Turns a client's cloud-init request into the stored spec: validated, password hashed.

(Issue 4 deepens the validation: SSH key types and base64, user-data YAML with line/column.)
"""

from __future__ import annotations

import crypt  # noqa: deprecated in 3.11, replaced by a pure SHA-512 crypt in issue 4
import warnings

from limiquantix.common.vms import CloudInitRequest, CloudInitSpec


def hash_password(password: str) -> str:
    """SHA-512 crypt (``$6$``) hash, the form cloud-init's ``passwd`` takes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def prepare(request: CloudInitRequest, *, vm_name: str) -> CloudInitSpec:
    """Validate ``request`` (raises InvalidRequest) and return what is stored."""
    return CloudInitSpec(
        user=request.user,
        ssh_authorized_keys=request.ssh_authorized_keys,
        password_hash=hash_password(request.password) if request.password else "",
        ssh_pwauth=request.ssh_pwauth,
        hostname=request.hostname or vm_name,
        user_data=request.user_data,
        network_config=request.network_config,
        vendor_data=request.vendor_data,
        locale=request.locale,
    )
