"""The node's images: the cache of library images, their download, node paths and the wait for
an image still being imported."""
