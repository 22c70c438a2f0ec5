"""VNC display passwords: set by the node, answered by the gateway's console proxy.

A node's VNC displays listen where the gateway can reach them (the node's IP on Kubernetes), so
without a password anyone who reaches that address sees and types into every console. Each
domain gets a password derived from the node key (``library_tokens.node_key``, which the gateway
derives from the shared secret too) and the VM id: nothing to store in a record, nothing sent
over NATS, nothing shown to a browser. The console proxy answers QEMU's VNC authentication
(RFB security type 2) itself and offers the browser "no authentication" on the WebSocket it has
already authorised with a single-use ticket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

PASSWORD_LENGTH = 8  # RFB's VNC authentication uses the first 8 bytes of the password


def vnc_password(key: bytes, vm_id: str) -> str:
    """The VM's display password: 8 characters from the URL-safe base64 alphabet."""
    digest = hmac.new(key, f"lq vnc password v1 {vm_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:PASSWORD_LENGTH]


def _mirrored(byte: int) -> int:
    """RFB's quirk: each key byte is used with its bits in reverse order."""
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(password: str, challenge: bytes) -> bytes:
    """The 16-byte answer to a VNC authentication challenge (DES-ECB, RFC 6143 section 7.2.2).

    DES is what the protocol fixes (it is not our choice of cipher); TripleDES with the same key
    three times is single DES.
    """
    if len(challenge) != 16:
        raise ValueError("a VNC challenge is 16 bytes")
    raw = password.encode()[:PASSWORD_LENGTH].ljust(PASSWORD_LENGTH, b"\0")
    key = bytes(_mirrored(b) for b in raw)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return encryptor.update(challenge) + encryptor.finalize()
