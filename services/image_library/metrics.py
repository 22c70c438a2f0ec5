"""The image library's Prometheus metrics, served at ``GET /metrics`` on its HTTP port.

Imports and uploads that finished (``active``) or failed (``error``), the bytes they stored,
and the bytes of image files served to nodes.
"""

from __future__ import annotations

from prometheus_client import Counter

IMAGE_IMPORTS = Counter(
    "lq_image_imports_total", "Imports and uploads that ended, by result", ["result"],
)
IMAGE_IMPORT_BYTES = Counter(
    "lq_image_import_bytes_total", "Bytes of the image files imports and uploads stored",
)
IMAGE_FILES_SERVED = Counter(
    "lq_image_file_requests_total", "Image file requests answered (GET or HEAD)", ["method"],
)
