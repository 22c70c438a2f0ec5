"""Errors specific to the gateway; each has a stable ``code`` and a hint (see common.errors)."""

from __future__ import annotations

from limiquantix.common.errors import Conflict, InvalidRequest, LimiquantixError, NotFound


class Unauthorized(LimiquantixError):
    """The request has no bearer token or a wrong one."""

    code = "unauthorized"
    status = 401
    default_hint = (
        "Send 'Authorization: Bearer <token>': a named token (lq token create, by an admin), or "
        "the master token, LQ_API_TOKEN or the content of <data dir>/api-token on the API host."
    )


class Forbidden(LimiquantixError):
    """The token is valid but its role does not allow this request."""

    code = "forbidden"
    status = 403
    default_hint = "Ask an admin for a token with a role that allows this (lq token create)."


class TokenNotFound(NotFound):
    """No named API token has this id."""

    code = "token_not_found"
    default_hint = "List tokens with GET /v1/tokens (lq token list)."


class TokenNameTaken(Conflict):
    """Another named API token already has this name."""

    code = "token_name_taken"
    default_hint = "Choose another name, or delete the existing token first."


class RouteNotFound(NotFound):
    """No route matches the path."""

    code = "route_not_found"
    default_hint = "See GET /v1/openapi.json for every route."


class MethodNotAllowed(LimiquantixError):
    """The path exists but not with this method."""

    code = "method_not_allowed"
    status = 405
    default_hint = "See GET /v1/openapi.json for the methods of each route."


class VmNotFound(NotFound):
    """No VM has this id or name."""

    code = "vm_not_found"
    default_hint = "List VMs with GET /v1/vms."


class NodeNotFound(NotFound):
    """No live or referenced node has this id."""

    code = "node_not_found"
    default_hint = "List nodes with GET /v1/nodes."


class UnknownNode(InvalidRequest):
    """The request names a node that is not online."""

    code = "unknown_node"
    default_hint = (
        "Pick a node listed online by GET /v1/nodes, or omit 'node' to let the API place the VM."
    )


class NoCapacity(Conflict):
    """No (or not the requested) node has room for the VM."""

    code = "no_capacity"
    default_hint = "Ask for fewer vCPUs or less memory, delete unused VMs, or add a node."


class ImageNotFound(NotFound):
    """The VM's image is neither an image id nor the name of one in the library."""

    code = "image_not_found"
    default_hint = "`lq image list` shows the images by id and name; import or upload one first."


class ImageNameAmbiguous(Conflict):
    """Several images have the name the request gave."""

    code = "image_name_ambiguous"
    default_hint = "Name the image by its id (`lq image list` shows the ids)."


class ImageNotReady(Conflict):
    """The image failed or is being deleted: no VM can be made from it."""

    code = "image_not_ready"
    default_hint = "`lq image show IMAGE` says why; import it again or pick another image."


class DiskTooSmall(InvalidRequest):
    """The requested disk is smaller than the image needs."""

    code = "disk_too_small"
    default_hint = "Ask for a larger disk (`--disk`, `disk_gib`)."


class HostPathNotAllowed(InvalidRequest):
    """A node path was given as the image, outside the directories the operator allowed."""

    code = "host_path_not_allowed"
    default_hint = ("Upload the file to the image library (`lq image upload FILE`) and use its "
                    "name; node paths work only inside LQ_HOST_IMAGE_DIRS.")


class IllegalTransition(Conflict):
    """The action is not allowed in the VM's current state."""

    code = "illegal_transition"
    default_hint = "Wait until the VM reaches a state the action is legal from (see its 'state')."


class NameTaken(Conflict):
    """Another VM already has this name."""

    code = "name_taken"
    default_hint = "Choose another name, or delete the existing VM first."


class IdempotencyKeyReused(InvalidRequest):
    """An Idempotency-Key was sent again with a different body."""

    code = "idempotency_key_reused"
    default_hint = "Use a new Idempotency-Key for a different request (keys live 24 h)."


class IdempotencyInProgress(Conflict):
    """The first request with this Idempotency-Key is still being processed."""

    code = "idempotency_in_progress"
    default_hint = "Retry in a moment with the same key and body."


class NodeUnavailable(LimiquantixError):
    """The VM's node did not answer a query in time."""

    code = "node_unavailable"
    status = 503
    default_hint = "Check that the node agent is running (GET /v1/nodes)."


class NotReady(LimiquantixError):
    """The gateway cannot reach NATS/JetStream."""

    code = "not_ready"
    status = 503
    default_hint = "Check that nats-server is running and reachable at LQ_NATS_URL."
