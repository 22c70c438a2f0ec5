"""Errors of the node agent: each has a stable ``code`` and a ``hint`` saying what to do next."""

from __future__ import annotations

from limiquantix.common.errors import Conflict, InvalidRequest, LimiquantixError, NotFound


class NodeAgentError(LimiquantixError):
    """Base of every error the node agent reports on a VM."""

    code = "node_error"


class ImageNotFound(NotFound):
    """The VM's image is neither a file on this node nor a known catalog id."""

    code = "image_not_found"
    default_hint = "`lq image list` shows the images by id and name."


class HostPathNotAllowed(InvalidRequest):
    """A node path named as an image lies outside LQ_HOST_IMAGE_DIRS (or it is empty)."""

    code = "host_path_not_allowed"
    default_hint = ("Upload the file to the image library (`lq image upload FILE`) and use its "
                    "name; node paths work only inside LQ_HOST_IMAGE_DIRS.")


class UnsupportedImage(InvalidRequest):
    """The image's format cannot back a VM disk."""

    code = "unsupported_image"
    default_hint = "Use a qcow2, raw or ISO image."


class LibvirtFailed(NodeAgentError):
    """libvirt refused or failed an operation on a domain."""

    code = "libvirt_error"
    default_hint = "See the message; the node's libvirtd log has details."


class VmFilesMissing(NodeAgentError):
    """The VM's disk (or saved domain definition) is gone from the node."""

    code = "vm_files_missing"
    status = 409
    default_hint = "The VM cannot be recovered on this node; delete it and create it again."


class DomainCrashed(NodeAgentError):
    """The domain stopped because QEMU crashed (or was killed) without being asked to."""

    code = "domain_crashed"
    default_hint = "Start the VM again; if it keeps crashing, see the node's QEMU log."


class WrongNode(Conflict):
    """The VM is placed on another node."""

    code = "wrong_node"
    default_hint = "Ask the node the VM's record names."


class FailpointTriggered(NodeAgentError):
    """A test-only failpoint (LQ_FAILPOINTS) made this step fail on purpose."""

    code = "failpoint"


class DomainMissing(NodeAgentError):
    """The VM has no libvirt domain on this node (and the action needs a running one)."""

    code = "domain_missing"
    status = 409
    default_hint = "Start the VM (the node redefines it from its files), then retry."


class DomainNotRunning(NodeAgentError):
    """The action needs a running domain."""

    code = "domain_not_running"
    status = 409
    default_hint = "Start the VM first."
