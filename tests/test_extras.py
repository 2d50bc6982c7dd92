"""siamtext.extras.require: a missing optional dependency names the extra that installs it."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from siamtext.extras import require


def test_present_module_is_returned():
    assert require("json", "x", "y") is sys.modules["json"]


def test_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"^method='faiss' needs faiss, which is not installed: "
                                          r"pip install 'siamtext\[faiss\]' \(or pip install "
                                          r"faiss-cpu / faiss-gpu\)$"):
        from siamtext.classify.approximate import faiss_pairs

        faiss_pairs(np.ones((3, 2), dtype=np.float32))


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.data", None)
    from siamtext.integrations.ray import _import_ray

    with pytest.raises(ImportError, match=r"pip install 'siamtext\[ray\]'"):
        _import_ray()
