"""One sample's read-and-decode under the loader's ``on_error``, shared by both backends.

Any exception while reading, checking, planning or decoding a sample becomes a fastload error
naming the sample (a user Source's KeyError, a codec's ValueError...): ``on_error="raise"``
stops with it; ``"skip"`` replaces the sample by the next index that works, with the same
random draws (they belong to the position), and reports it; after ``OnError.limit``
consecutive bad samples it gives up with an error that says so and names them. Errors that are
not about the sample (a bad argument: SpecError; a user op's TransformError; a source that
cannot be read at all: SourceUnavailable; MemoryError) pass through unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from ..errors import DecodeError, FastloadError, SourceError, SourceUnavailable
from ..options import OnError
from ..sources.base import Source

T = TypeVar("T")


def prefetch(source: Source, indices: Any, ahead: Any = None) -> None:
    """Let a source that fetches over a network start a batch's reads together, and the next
    batch's (``ahead``) in the background (optional ``Source.prefetch``; a local source has
    none)."""
    fetch = getattr(source, "prefetch", None)
    if fetch is not None:
        fetch(indices, ahead)


def sample_error(exc: Exception, source: Source, index: int) -> FastloadError:
    """``exc`` as the error of sample ``index``: fastload's own as they are, others wrapped."""
    if isinstance(exc, (DecodeError, SourceError)):
        return exc
    return DecodeError(f"{source.locate(index)}: {type(exc).__name__}: {exc} (while reading or "
                       "decoding this sample); check the sample, or pass on_error='skip'")


def read_sample(source: Source, index: int, on_error: OnError,
                work: Callable[[int], T]) -> tuple[int, T, list[tuple[str, str]]]:
    """``work(i)`` for sample ``index``, or with ``on_error.policy == "skip"`` for the first of
    ``index + 1, + 2, ...`` (modulo the source, at most ``on_error.limit`` tries) for which it
    succeeds. -> (the index used, its result, the (file, reason) of each sample skipped)."""
    skipped: list[tuple[str, str]] = []
    tries = on_error.limit if on_error.policy == "skip" else 1
    for attempt in range(tries):
        current = (index + attempt) % len(source)
        try:
            return current, work(current), skipped
        except SourceUnavailable:
            raise
        except (DecodeError, SourceError) as exc:
            error: FastloadError = exc
        except (MemoryError, FastloadError):
            raise
        except Exception as exc:  # noqa: BLE001 - a user Source or a codec: any error, named
            error = sample_error(exc, source, current)
        if on_error.policy != "skip":
            raise error from None
        skipped.append((source.locate(current), str(error)))
    raise gave_up(error, skipped)


def gave_up(last: FastloadError, skipped: list[tuple[str, str]]) -> FastloadError:
    """The error of ``on_error="skip"`` after ``len(skipped)`` consecutive bad samples: the
    type of the last one's, naming them all."""
    names = "; ".join(where for where, _ in skipped[:4])
    more = f"; ... ({len(skipped) - 4} more)" if len(skipped) > 4 else ""
    return type(last)(f"on_error='skip' gave up after {len(skipped)} consecutive bad samples "
                      f"(skip_limit={len(skipped)}): {names}{more}. The last one: {last}. So many "
                      "in a row is damage in bulk (a bad folder or shard): check the data, or "
                      "raise skip_limit")
