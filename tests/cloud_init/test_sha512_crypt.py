"""The pure-Python SHA-512 crypt agrees with OpenSSL and with Drepper's published vectors."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from limiquantix.common.cloud_init import hash_password
from limiquantix.common.sha512_crypt import sha512_crypt, verify

CASES = [
    ("hunter2", "saltsalt"),
    ("correct horse battery staple", "0123456789abcdef"),
    ("ünïcødé pässwörd", "AbC./xyz"),
    ("x" * 200, "a"),  # longer than one SHA-512 block
    ("p" * 64, "s" * 16),  # exactly one block
]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
@pytest.mark.parametrize(("password", "salt"), CASES)
def test_hash_matches_openssl_passwd_6(password: str, salt: str) -> None:
    expected = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, password],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    assert sha512_crypt(password, salt) == expected


def test_hash_matches_drepper_vectors() -> None:
    """Vectors from the specification, including an explicit rounds= and a salt cut to 16."""
    assert sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLi"
        "BFdcbYEdFCoEOfaS35inz1"
    )
    assert sha512_crypt("Hello world!", "saltstringsaltstring", rounds=10000) == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/Urj"
        "mM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
    )
    assert sha512_crypt("we have a short salt string but not a short password", "short",
                        rounds=77777) == (
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUe"
        "OxFmtlcGZelFl5CxtgfiAc0"
    )


def test_hash_password_salts_randomly_and_verifies() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first.startswith("$6$") and first != second
    assert verify("s3cret", first) and verify("s3cret", second)
    assert not verify("s3creT", first)
