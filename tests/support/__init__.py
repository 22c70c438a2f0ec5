"""Helpers the tests share (classes, functions, constants), by topic; fixtures and hooks stay in
the ``conftest.py`` files. Modules: ``flows`` (full-stack steps through the API), ``disks``
(qcow2 images, hashes), ``browser`` (headless Chromium), ``api_gateway`` and ``console`` (the
gateway app on aiohttp's test server), ``cli`` (the ``lq`` script), ``images`` (the image
library in-process), ``origin`` and ``counting_proxy`` (local HTTP servers), ``node_agent`` (an
agent in-process), ``security``, ``rfb`` and ``tcp_servers`` (VNC and TCP stand-ins),
``cloud_init``, ``web_build``, ``golden`` (golden files, ``--update-golden``)."""
