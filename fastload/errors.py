"""fastload's error types. Every error a user can cause derives from FastloadError."""


class FastloadError(Exception):
    """Base class of every error fastload raises on purpose."""


class SpecError(FastloadError, ValueError):
    """A pipeline spec or a loader argument is invalid; the message names the op/argument."""


class OpNotSupported(SpecError):
    """The chosen backend cannot run an op of the pipeline; the message names the op and the
    backend that can."""


class SourceError(FastloadError):
    """A data source is missing, empty or malformed; the message names the path."""


class SourceUnavailable(SourceError):
    """The source as a whole cannot be read (storage unreachable after retries, access refused,
    a full cache disk): not one bad sample, so ``on_error="skip"`` does not skip it."""


class FormatError(SourceError):
    """Stored bytes (a record, an index, a manifest) do not match the format."""


class DecodeError(FastloadError):
    """One sample could not be decoded; the message names the file/record and sample index."""


class BackendUnavailable(FastloadError, ImportError):
    """A backend's library is not installed; the message says how to install it."""


class LoaderTimeout(FastloadError, TimeoutError):
    """A batch was not ready within the loader's ``timeout``; the message names the worker,
    the batch's sample indices and their files."""


class TransformError(FastloadError):
    """A user's op (``Lambda``, ``BatchLambda``) failed or returned the wrong thing; the message
    names the op, the sample index and its file (or the batch's samples)."""
