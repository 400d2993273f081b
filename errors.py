"""fcbuild's error types: the stable set a caller of the function can rely on.

Every failure that fcbuild reports to FC is one of these classes. The runtime
turns them into FC's function-error response in exactly one place
(`fc_runtime.error_response`); everything else only raises them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported before the runtime's port opens (see fc_runtime)
    from typing import ClassVar


class FcBuildError(Exception):
    """A failure that is reported to the caller as `errorType: <error_type>`."""

    error_type: ClassVar[str] = "Internal"


def with_message(exc: FcBuildError, message: str) -> FcBuildError:
    """`exc` with another message: the same type and attributes, whatever its constructor takes."""
    new = type(exc).__new__(type(exc))
    new.args = (message,)
    new.__dict__.update(exc.__dict__)
    return new


class InvalidRequest(FcBuildError):
    """The invoke body is not a valid build request; the message names the field."""

    error_type = "InvalidRequest"


class SourceNotFound(FcBuildError):
    """The source archive or prefix does not exist in OSS."""

    error_type = "SourceNotFound"


class AccessDenied(FcBuildError):
    """OSS refused the credentials or the signature (wrong key, no permission)."""

    error_type = "AccessDenied"


class InvalidSource(FcBuildError):
    """The source is there but unusable: hostile or broken archive, no package.json."""

    error_type = "InvalidSource"


class BuildFailed(FcBuildError):
    """Install or build exited non-zero, or produced no output; the message ends with the log tail."""

    error_type = "BuildFailed"


class InvalidOutput(FcBuildError):
    """The build's output cannot be deployed as it is (links, another site's folder, fcbuild's own
    folder, names that cannot be OSS keys, over the size or file limits); nothing was published."""

    error_type = "InvalidOutput"


class BuildTimeout(FcBuildError):
    """Install or build ran past its deadline; its whole process group was killed."""

    error_type = "BuildTimeout"


class UploadFailed(FcBuildError):
    """Deploying the output to OSS failed after retries; the previous site still serves."""

    error_type = "UploadFailed"


class DownloadFailed(FcBuildError):
    """Reading from OSS failed after retries for a reason other than a missing object."""

    error_type = "DownloadFailed"


class DiskFull(FcBuildError):
    """The disk is full (or too full to start): the message says where and in which step."""

    error_type = "DiskFull"


class Busy(FcBuildError):
    """Every build slot of this instance stayed taken for as long as the request could wait."""

    error_type = "Busy"


class Superseded(FcBuildError):
    """A build of the same target that started later is deploying; this one did not publish."""

    error_type = "Superseded"


class ShuttingDown(FcBuildError):
    """The instance is stopping and takes no new builds."""

    error_type = "ShuttingDown"


class NotAvailable(FcBuildError):
    """A requested capability is not present on this instance (e.g. no Node.js matches)."""

    error_type = "NotAvailable"


ERROR_TYPES: tuple[str, ...] = (
    "InvalidRequest",
    "SourceNotFound",
    "AccessDenied",
    "InvalidSource",
    "DownloadFailed",
    "BuildFailed",
    "InvalidOutput",
    "BuildTimeout",
    "UploadFailed",
    "DiskFull",
    "Busy",
    "Superseded",
    "NotAvailable",
    "ShuttingDown",
    "Internal",
)
