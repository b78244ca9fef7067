"""Where training runs and how it is made reproducible: the torch device and the seeding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else is taken as a torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device, num_threads: int | None) -> Iterator[torch.Generator]:
    """Seed numpy and torch, turn on deterministic algorithms on CPU; yield a generator for shuffling."""
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    np.random.seed(seed)
    torch.manual_seed(seed)
    # CUDA determinism would need CUBLAS_WORKSPACE_CONFIG set before CUDA starts; the contract is CPU only.
    torch.use_deterministic_algorithms(device.type == "cpu")
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)
