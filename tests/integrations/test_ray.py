"""Ray Data batch inference on a local Ray instance (2 CPUs): the same vectors as encode."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="pip install 'siamtext[ray]'")

from siamtext.integrations.ray import embed  # noqa: E402
from tests.ray_start import start_local_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    start_local_ray(configure_logging=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_embed_adds_the_vectors_of_encode_on_two_actors(local_ray, tiny_model, tiny_bert_dir,
                                                        corpus) -> None:
    texts = corpus[:40] + [""]
    rows = [{"id": i, "text": t} for i, t in enumerate(texts)] + [{"id": len(texts),
                                                                   "text": None}]
    ds = ray.data.from_items(rows)
    out = embed(ds, tiny_model, batch_size=8, concurrency=2, num_cpus=1).take_all()
    assert len(out) == len(rows)  # nothing dropped, the None row included
    got = np.stack([r["embedding"] for r in sorted(out, key=lambda r: r["id"])])
    expected = tiny_model.encode(texts + [""])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # a folder every worker can read works the same way
    by_path = embed(ray.data.from_items(rows[:5]), str(tiny_bert_dir), batch_size=5).take_all()
    assert {r["id"] for r in by_path} == set(range(5))


def test_bad_columns_are_named(local_ray, tiny_model) -> None:
    ds = ray.data.from_items([{"sentence": "hello"}])
    with pytest.raises(ValueError, match=r"no column 'text'; it has columns \['sentence'\]"):
        embed(ds, tiny_model)
    with pytest.raises(ValueError, match="already has a column 'sentence'"):
        embed(ds, tiny_model, column="sentence", output_column="sentence")
    with pytest.raises(ValueError, match="concurrency must be a positive integer"):
        embed(ds, tiny_model, column="sentence", concurrency=0)
