"""One shallow tree of errors a user can cause; each service maps it to its transport once."""


class QServerError(Exception):
    """Base class: the message is shown to the user as is."""


class InvalidJob(QServerError):
    """The job's properties, metadata or program are malformed (gRPC INVALID_ARGUMENT, HTTP 400)."""


class BackendNotFound(QServerError):
    """No backend has that name (gRPC NOT_FOUND, HTTP 404)."""


class BackendDisabled(QServerError):
    """The backend exists but its plugin was removed (gRPC FAILED_PRECONDITION)."""


class BackendCannotSweep(QServerError):
    """A sweep (many bindings in one job) sent to a backend whose plugin runs one binding per
    job: only the built-in Aer backends run sweeps (gRPC FAILED_PRECONDITION)."""


class ClusterCannotRun(QServerError):
    """No node of the cluster has ever offered what the job needs: a tag, a GPU (gRPC FAILED_PRECONDITION)."""


class InvalidQuery(QServerError):
    """A listing's query parameter is malformed: an unknown status, field or order, a limit out of
    bounds (HTTP 400); the message names the parameter."""


class JobNotFound(QServerError):
    """No job has that id (HTTP 404)."""


class QueueUnavailable(QServerError):
    """RabbitMQ did not confirm the job's message (gRPC UNAVAILABLE); the job was not kept."""


class SchemaOutOfDate(QServerError):
    """The database schema is not at the revision this code expects; run `qserver db upgrade`."""


class Conflict(QServerError):
    """The request clashes with the current state: a running job, an admitted plugin (HTTP 409)."""


class PluginNotFound(QServerError):
    """No plugin of that name is admitted, or the package index has no such package (HTTP 404)."""


class NotAPlugin(QServerError):
    """The package exists but is no QServer plugin: no or a bad ``backends.txt`` (HTTP 422)."""


class Unauthenticated(QServerError):
    """No API key, a wrong one or a revoked one, while authentication is on (gRPC UNAUTHENTICATED, HTTP 401)."""


class Forbidden(QServerError):
    """The caller's key is valid but its role may not do this: admin only (HTTP 403)."""


class TooManyPending(QServerError):
    """The user already has the most pending jobs a user may have (gRPC RESOURCE_EXHAUSTED)."""


class HeadersTooLarge(QServerError):
    """The request's gRPC metadata is over QSERVER_GRPC_MAX_HEADER_BYTES (gRPC RESOURCE_EXHAUSTED)."""


class IdempotencyConflict(QServerError):
    """The submission's idempotency key was already used for a different request (gRPC ALREADY_EXISTS)."""


class StreamCutShort(QServerError):
    """The submission stream ended before the messages its sender declared (metadata
    ``stream-messages``) arrived: lost in transit, nothing stored (gRPC UNAVAILABLE: send it again)."""


class UnsafeSettings(QServerError):
    """The settings would expose the service unsafely, e.g. authentication off on a public bind; refused at start."""
