"""Helpers the tests share (classes, functions, constants), one module per topic; fixtures and
hooks stay in the ``conftest.py`` files.

``flows`` (full-stack steps through the API, ``FAST_ENV``), ``disks`` (qcow2 images, hashes),
``api_gateway`` and ``console`` (the gateway app on aiohttp's test server), ``cli`` (the ``lq``
script), ``images`` (the image library in-process or as a process), ``origin`` and
``counting_proxy`` (local HTTP servers; the proxy counts requests and can throttle),
``node_agent`` (an agent in-process), ``security``, ``rfb`` and ``tcp_servers`` (VNC and TCP
stand-ins), ``browser`` (headless Chromium),
``cloud_init``, ``guest_image`` and ``guest_vm`` (the real Debian guest), ``web_build``,
``golden`` (golden files, ``--update-golden``), ``marks`` (what the test marks mean),
``waits`` (``eventually``: a poll with a deadline, the way to wait for something).
"""
