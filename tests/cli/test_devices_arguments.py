"""``lq vm create --max-cpus/--max-memory`` and ``lq vm resize`` arguments become the API's
bodies (checked against the API's own request types)."""

from __future__ import annotations

import io

import msgspec

from limiquantix.cli import vm_input
from limiquantix.cli.main import build_parser, run
from limiquantix.common.vms import CreateVmRequest


def test_create_hot_plug_ceilings_reach_the_request_body() -> None:
    args = build_parser().parse_args(["vm", "create", "web-1", "--cpus", "1", "--memory", "1G",
                                      "--max-cpus", "4", "--max-memory", "4G"])
    body = msgspec.convert(vm_input.create_body(args), CreateVmRequest)
    assert (body.vcpus, body.max_vcpus, body.memory_mib, body.max_memory_mib) == (1, 4, 1024,
                                                                                   4096)


def test_resize_without_any_change_is_a_usage_error_before_any_request() -> None:
    err = io.StringIO()
    assert run(["vm", "resize", "web-1", "--url", "http://127.0.0.1:9"], out=io.StringIO(),
               err=err) == 2
    assert "nothing to change" in err.getvalue()


def test_resize_sizes_are_checked_before_any_request() -> None:
    err = io.StringIO()
    assert run(["vm", "resize", "web-1", "--disk", "1.5G", "--url", "http://127.0.0.1:9"],
               out=io.StringIO(), err=err) == 2
    assert "whole number of GiB" in err.getvalue()
