"""Encoding with one process per device: same rows, same order as one process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siamtext.pool import check_devices


def test_two_cpu_workers_give_the_single_process_embeddings(tiny_model, corpus) -> None:
    texts = corpus[:90] + ["", "a", corpus[0]]  # empty text and a repeat keep their rows
    expected = tiny_model.encode(texts, batch_size=8)
    got = tiny_model.encode(texts, batch_size=8, devices=["cpu", "cpu"])
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_pooled_options_follow_encode(tiny_model) -> None:
    # one worker start covers a single string, convert_to and normalize (starts are slow)
    one = tiny_model.encode("hello there", normalize=False, devices=["cpu"],
                            convert_to="torch")
    assert isinstance(one, torch.Tensor) and one.shape == (tiny_model.embedding_dim,)
    expected = tiny_model.encode("hello there", normalize=False, convert_to="torch")
    assert abs(float(expected.norm()) - 1.0) > 1e-3  # unnormalised, so the option counted
    np.testing.assert_allclose(one.numpy(), expected.numpy(), atol=1e-6)
    assert tiny_model.encode([], devices=["cpu"]).shape == (0, tiny_model.embedding_dim)


@pytest.mark.parametrize("devices,error,match", [
    ([], ValueError, "devices is empty"),
    ("cpu", TypeError, "devices must be a list"),
    (["gpu7"], ValueError, "not a device name"),
    (["cuda:3"], ValueError, "CUDA device"),
])
def test_bad_devices_are_refused_before_any_process_starts(devices, error, match) -> None:
    if match == "CUDA device" and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    with pytest.raises(error, match=match):
        check_devices(devices)
