"""Security tests reuse the image library fixtures (real nats-server, in-process library)."""

from tests.image_library.conftest import client, disk, library, nats_server, nc, origin

__all__ = ["client", "disk", "library", "nats_server", "nc", "origin"]
