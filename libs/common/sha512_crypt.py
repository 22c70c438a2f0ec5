"""SHA-512 crypt (``$6$``), the password hash cloud-init's ``passwd`` and /etc/shadow take.

Pure Python, after Ulrich Drepper's specification ("Unix crypt using SHA-256 and SHA-512"),
because the stdlib ``crypt`` module is deprecated since 3.11 and removed in 3.13. Checked against
``openssl passwd -6`` in tests/cloud_init/test_sha512_crypt.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_ROUNDS = 5000
_MIN_ROUNDS, _MAX_ROUNDS = 1000, 999_999_999
_MAX_SALT = 16

# The order in which the 64 digest bytes are packed, three at a time, into the output.
_TRIPLETS = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54),
    (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60),
    (40, 61, 19), (62, 20, 41),
)


def make_salt(length: int = _MAX_SALT) -> str:
    """A random salt from the crypt alphabet (16 characters: the most SHA-512 crypt uses)."""
    return "".join(secrets.choice(_ITOA64) for _ in range(length))


def _repeat_to(data: bytes, length: int) -> bytes:
    return (data * (length // len(data) + 1))[:length]


def _digest(password: bytes, salt: bytes, rounds: int) -> bytes:
    plen = len(password)
    alternate = hashlib.sha512(password + salt + password).digest()
    a = hashlib.sha512(password + salt)
    a.update(_repeat_to(alternate, plen))
    i = plen
    while i:
        a.update(alternate if i & 1 else password)
        i >>= 1
    digest_a = a.digest()
    p_bytes = _repeat_to(hashlib.sha512(password * plen).digest(), plen) if plen else b""
    s_bytes = _repeat_to(hashlib.sha512(salt * (16 + digest_a[0])).digest(), len(salt))
    c = digest_a
    for r in range(rounds):
        h = hashlib.sha512(p_bytes if r & 1 else c)
        if r % 3:
            h.update(s_bytes)
        if r % 7:
            h.update(p_bytes)
        h.update(c if r & 1 else p_bytes)
        c = h.digest()
    return c


def _encode(digest: bytes) -> str:
    out: list[str] = []

    def put(value: int, chars: int) -> None:
        for _ in range(chars):
            out.append(_ITOA64[value & 0x3F])
            value >>= 6

    for b2, b1, b0 in _TRIPLETS:
        put((digest[b2] << 16) | (digest[b1] << 8) | digest[b0], 4)
    put(digest[63], 2)
    return "".join(out)


def sha512_crypt(password: str, salt: str | None = None, *, rounds: int | None = None) -> str:
    """``$6$[rounds=N$]salt$hash`` of ``password`` (UTF-8); a random salt when none is given."""
    salt = (make_salt() if salt is None else salt)[:_MAX_SALT]
    if "$" in salt or "\n" in salt or ":" in salt:
        raise ValueError("salt must not contain '$', ':' or a newline")
    prefix = "$6$"
    effective = DEFAULT_ROUNDS
    if rounds is not None:
        effective = min(max(rounds, _MIN_ROUNDS), _MAX_ROUNDS)
        prefix += f"rounds={effective}$"
    digest = _digest(password.encode(), salt.encode(), effective)
    return f"{prefix}{salt}${_encode(digest)}"


def verify(password: str, hashed: str) -> bool:
    """True when ``password`` produces ``hashed`` (a ``$6$`` string); constant-time compare."""
    parts = hashed.split("$")
    if len(parts) not in (4, 5) or parts[1] != "6":
        return False
    rounds: int | None = None
    if len(parts) == 5:
        if not parts[2].startswith("rounds="):
            return False
        rounds = int(parts[2].removeprefix("rounds="))
    return hmac.compare_digest(sha512_crypt(password, parts[-2], rounds=rounds), hashed)
