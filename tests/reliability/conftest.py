"""The reliability tests run torch on one thread.

They make thousands of small forward passes of the tiny model; on a machine whose cores are
busy, every multi-threaded small operation waits for its slowest thread (100,000 empty
strings: 7 s on one thread, over 100 s on two busy ones). Results do not depend on it.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
