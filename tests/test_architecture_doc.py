"""docs/architecture.md answers "who writes a VM's state?" for every field of the record."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from limiquantix.common.vms import VmRecord

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
SECTION = "### Who writes a VM's state?"


def test_every_vm_record_field_has_a_writer_in_the_architecture_doc() -> None:
    text = DOC.read_text()
    assert SECTION in text
    table = text.split(SECTION, 1)[1].split("\n\n", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("|")]
    named = set(re.findall(r"`([a-z_]+)`", "\n".join(first_cells)))
    fields = {f.name for f in msgspec.structs.fields(VmRecord)}
    assert fields - named == set(), "add a row (field, writer, when) to " + SECTION
