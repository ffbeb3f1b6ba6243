"""The ``device=`` argument: where batches land, checked once with a message that says why."""

from __future__ import annotations

from typing import Any


def check_device(device: Any) -> Any:
    """A ``torch.device`` of type cpu or cuda that this process can use, or a SpecError.

    None picks ``cuda`` when a GPU is usable, else ``cpu``; ``cuda`` without an index is the
    current CUDA device.
    """
    import torch

    from .errors import SpecError

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SpecError(f"device={device!r} is not a torch device ({exc}); use 'cpu' or "
                        "'cuda[:N]'") from None
    if target.type not in ("cpu", "cuda"):
        raise SpecError(f"device={device!r}: fastload puts batches on 'cpu' or 'cuda[:N]', "
                        f"not on {target.type!r}")
    if target.type == "cpu":
        return target
    if not torch.cuda.is_available():
        build = (f"built with CUDA {torch.version.cuda}, but no GPU is visible"
                 if torch.version.cuda else "a CPU-only build")
        raise SpecError(f"device={device!r}: no CUDA device is usable here (torch "
                        f"{torch.__version__} is {build}); use device='cpu'")
    count = torch.cuda.device_count()
    if target.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if target.index >= count:
        raise SpecError(f"device={device!r}: this process sees {count} GPU(s) "
                        f"(cuda:0..cuda:{count - 1})")
    return target
