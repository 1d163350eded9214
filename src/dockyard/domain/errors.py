"""Errors a user can act on. The API maps each kind to one HTTP status."""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error whose message is safe to show to the user."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DockyardError):
    kind = "invalid"


class Unauthorized(DockyardError):
    kind = "unauthorized"


class Forbidden(DockyardError):
    kind = "forbidden"


class NotFound(DockyardError):
    kind = "not_found"


class Conflict(DockyardError):
    kind = "conflict"


class InvalidHandle(InvalidInput):
    def __init__(self, handle: str) -> None:
        super().__init__(
            f"invalid app handle {handle!r}: use 1-63 lowercase letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen"
        )


class InvalidUserName(InvalidInput):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"invalid user name {name!r}: use 1-63 lowercase letters, digits, '.', '_' "
            "and '-', starting with a letter"
        )


class InvalidConfigArgument(InvalidInput):
    pass


class AppNotFound(NotFound):
    def __init__(self, handle: str) -> None:
        super().__init__(f"app {handle!r} not found")


class UserNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"user {name!r} not found")


class OperationNotFound(NotFound):
    def __init__(self, operation_id: int) -> None:
        super().__init__(f"operation {operation_id} not found")


class ConfigKeyNotFound(NotFound):
    def __init__(self, handle: str, key: str) -> None:
        super().__init__(f"{key} is not set on app {handle!r}")


class HandleTaken(Conflict):
    def __init__(self, handle: str) -> None:
        super().__init__(f"an app named {handle!r} already exists")


class UserExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(f"a user named {name!r} already exists")


class OperationFinished(Conflict):
    def __init__(self, operation_id: int, status: str) -> None:
        super().__init__(
            f"operation {operation_id} has already {status}; "
            "only queued or running operations can be cancelled"
        )


class AdminRequired(Forbidden):
    def __init__(self) -> None:
        super().__init__("this needs an admin token")


class InvalidToken(Unauthorized):
    def __init__(self) -> None:
        super().__init__("missing or invalid API token")


class CredentialsRejected(DockyardError):
    """The registry refused the credentials (or demanded some we lack)."""

    kind = "credentials_rejected"

    def __init__(self, host: str, *, had_credentials: bool, building: bool = False) -> None:
        if building:  # a FROM image: a git push gives its credentials as configuration
            how = (
                "set DOCKYARD_PRIVATE_REGISTRY_USERNAME and DOCKYARD_PRIVATE_REGISTRY_PASSWORD "
                "with `dockyard config:set` (or add a source with `dockyard registries:add`) "
                "and push again"
            )
            message = (
                f"the registry {host} rejected the credentials: they are wrong or expired; {how}"
                if had_credentials
                else f"the registry {host} requires credentials: {how}"
            )
        elif had_credentials:
            message = (
                f"the registry {host} rejected the credentials: they are wrong or expired; "
                "deploy again with --private-registry-username and --private-registry-password"
            )
        else:
            message = (
                f"the registry {host} requires credentials: pass --private-registry-username "
                "and --private-registry-password"
            )
        super().__init__(message)
        self.host = host  # which registry, to fetch its source's credentials again


class ImageNotFound(DockyardError):
    kind = "image_not_found"

    def __init__(self, reference: str) -> None:
        super().__init__(f"image {reference} not found: check the repository and tag")


class RegistryUnreachable(DockyardError):
    kind = "registry_unreachable"

    def __init__(self, host: str, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(f"the registry {host} cannot be reached{extra}")


class HealthCheckFailed(DockyardError):
    kind = "health_check_failed"


class EngineUnreachable(DockyardError):
    kind = "engine_unreachable"


class NoNetworkAddresses(DockyardError):
    """The engine's address pools are used up: the app's own network cannot be made."""

    kind = "engine_out_of_addresses"

    def __init__(self, app: str) -> None:
        super().__init__(
            f"the Docker engine has no address range left for a network of app {app!r} "
            "(each app has one): give dockerd a larger --default-address-pool, "
            "or deprovision apps that are no longer used"
        )


class ContainerRefused(DockyardError):
    """The engine would not start a container, for a reason of the image's."""

    kind = "container_refused"
