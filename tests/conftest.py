"""Shared test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The tests' tensors are small: one thread is faster, and a shared CPU (CI has two
    cores) is not oversubscribed by torch's thread pool waiting on itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
