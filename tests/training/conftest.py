"""Fixtures for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from siamtext import SiamText


@pytest.fixture()
def model(tiny_bert_dir: Path) -> SiamText:
    return SiamText(tiny_bert_dir, device="cpu")
