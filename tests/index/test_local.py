"""The local engine: exact and IVF search, snapshots and catch-up, damaged files, full and
read-only disks, the writer lock, background rebuilds."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid

import numpy as np
import pytest

from siamtext.index import Index, IndexLockedError
from siamtext.index.ann import Structure, nlist_for
from tests.index.conftest import brute_force, clustered


def ids_of(hits):
    return [[h.id for h in row] for row in hits]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def test_nlist_and_training_size_by_hand():
    assert nlist_for(1_000_000) == 2048  # 2 sqrt(n) = 2000 -> 2^11
    assert nlist_for(20_000) == 256  # 282.8 -> 2^8
    assert nlist_for(100) == 64  # the floor
    assert Structure.train_size(1_000_000) == 81_920  # 40 per list
    assert Structure.train_size(5_000) == 5_000


def test_below_the_ivf_size_search_is_brute_force(tmp_path):
    x = clustered(600, 16, seed=1)
    q = clustered(40, 16, seed=2)
    with Index.create(tmp_path / "c", dim=16) as idx:
        ids = np.asarray(idx.add(embeddings=x))
        assert idx.info()["search"] == "flat"
        hits = idx.search(q, k=10)
    scores, truth = brute_force(x, ids, q, 10)
    assert ids_of(hits) == truth.tolist()
    np.testing.assert_allclose([[h.score for h in row] for row in hits], scores, atol=1e-5)


def test_above_the_ivf_size_recall_meets_the_target(tmp_path):
    both = clustered(6100, 32, clusters=80, seed=3)  # queries: other points, same centres
    x, q = both[:6000], both[6000:]
    with Index.create(tmp_path / "c", dim=32, ivf_from=1000, recall_target=0.95) as idx:
        ids = np.asarray(idx.add(embeddings=x))
        info = idx.info()
        assert info["search"] == "ivf" and info["nlist"] == 128 and info["sample_recall"] >= 0.95
        hits = idx.search(q, k=10)
    _, truth = brute_force(x, ids, q, 10)
    assert recall(ids_of(hits), truth) >= 0.9  # tuned on stored items, measured on new ones
    for qi, row in enumerate(hits):  # the scores of what IVF finds are exact
        np.testing.assert_allclose([h.score for h in row], [x[h.id] @ q[qi] for h in row],
                                   atol=1e-5)


def test_a_reader_catches_up_from_the_snapshot_and_the_rows(tmp_path):
    x = clustered(3000, 16, seed=4)
    w = Index.create(tmp_path / "c", dim=16, ivf_from=1000)
    w.add(embeddings=x[:2000])
    w.close()  # writes the snapshot
    w = Index.open(tmp_path / "c", ivf_from=1000)
    assert w.info()["snapshot_write_number"] == 1
    w.add(embeddings=x[2000:2500])  # after the snapshot: only in the rows
    w.remove(list(range(10)))
    w.upsert(embeddings=x[2999:3000], ids=[20])
    r = Index.open(tmp_path / "c", readonly=True, ivf_from=1000)
    assert len(r) == len(w) == 2490
    q = x[2990:3000]
    assert ids_of(r.search(q, k=5)) == ids_of(w.search(q, k=5))
    w.add(embeddings=x[2500:2600])
    assert len(r) == 2490  # until it refreshes
    assert r.refresh() == 100
    assert len(r) == 2590 and ids_of(r.search(q, k=5)) == ids_of(w.search(q, k=5))
    assert r.refresh() == 0
    r.close()
    w.close()


def test_a_damaged_snapshot_is_rebuilt_from_the_rows(tmp_path):
    x = clustered(1500, 16, seed=5)
    with Index.create(tmp_path / "c", dim=16, ivf_from=1000) as idx:
        idx.add(embeddings=x)
        before = ids_of(idx.search(x[:20], k=5))
    (snap,) = tmp_path.joinpath("c").glob("search-*.faiss")
    snap.write_bytes(b"not a faiss index")
    with Index.open(tmp_path / "c", ivf_from=1000) as idx:
        assert len(idx) == 1500
        assert ids_of(idx.search(x[:20], k=5)) == before  # same seed: same training
    manifest = tmp_path / "c" / "search.json"
    settings = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**settings, "seq": 999}))  # newer than the rows
    with Index.open(tmp_path / "c", ivf_from=1000) as idx:
        assert len(idx) == 1500


def test_a_grown_ivf_index_is_retrained_in_the_background(tmp_path):
    x = clustered(1800, 16, seed=6)
    with Index.create(tmp_path / "c", dim=16, ivf_from=300) as idx:
        idx.add(embeddings=x[:300])
        assert idx.info()["trained_items"] == 300
        for a in range(300, 1800, 100):  # past 4 x 300 a rebuild starts
            idx.add(embeddings=x[a : a + 100])
            assert len(idx) == a + 100  # searches and writes go on meanwhile
        idx.store._rebuild.join()
        info = idx.info()
        assert info["trained_items"] >= 1200 and info["rebuilding"] is False
        assert len(idx) == 1800
        hits = idx.search(x[1700:1710], k=1)
        assert [row[0].id for row in hits] == list(range(1700, 1710))


def test_one_writer_at_a_time_and_many_readers(tmp_path):
    Index.create(tmp_path / "c", dim=2).close()
    w = Index.open(tmp_path / "c")
    with pytest.raises(IndexLockedError, match=rf"already open for writing \(by process "
                                               rf"{os.getpid()}\).*readonly=True"):
        Index.open(tmp_path / "c")
    readers = [Index.open(tmp_path / "c", readonly=True) for _ in range(2)]
    w.close()
    Index.open(tmp_path / "c").close()  # the lock goes with the writer
    for r in readers:
        r.close()


def test_a_full_disk_rolls_the_write_back_and_keeps_what_was_there(tmp_path):
    x = clustered(400, 64, seed=7)
    idx = Index.create(tmp_path / "c", dim=64)
    idx.add(embeddings=x[:50], texts=["t"] * 50)
    pages = idx.store.rows.writer.execute("PRAGMA page_count").fetchone()[0]
    idx.store.rows.writer.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(OSError, match="disk is full") as err:
        idx.add(embeddings=x[50:], texts=["t" * 1000] * 350)
    assert err.value.errno == errno.ENOSPC
    assert len(idx) == 50 and len(idx.search(x[60], k=400)) == 50
    idx.close()
    with Index.open(tmp_path / "c") as idx:
        assert len(idx) == 50 and [i.id for i in idx] == list(range(50))
        assert idx.add(embeddings=x[50:52]) == [50, 51]  # the rollback gave back nothing


@pytest.fixture()
def read_only_mount(tmp_path):
    """``tmp_path/ro``: a read-only bind mount of ``tmp_path/src`` (needs root)."""
    src, dst = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    dst.mkdir()
    ok = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {ok.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(dst)], check=True,
                       capture_output=True)
        yield src, dst
    finally:
        subprocess.run(["umount", str(dst)], check=True)


def test_a_read_only_location(read_only_mount, square):
    src, ro = read_only_mount
    with pytest.raises(PermissionError, match="cannot create a collection"):
        Index.create(ro / "new", dim=2)
    with Index.create(src / "c", dim=2) as idx:
        idx.add(embeddings=square)
    with pytest.raises(PermissionError, match="readonly=True to search it"):
        Index.open(ro / "c")
    with Index.open(ro / "c", readonly=True) as idx:
        assert [h.id for h in idx.search(square[0], k=2)] == [0, 1]


def test_stale_temporary_files_are_removed_by_the_writer(tmp_path, square):
    with Index.create(tmp_path / "c", dim=2) as idx:
        idx.add(embeddings=square)
    folder = tmp_path / "c"
    stale = folder / f".search-9.faiss.tmp-{uuid.uuid4().int % 10**6 + 10**7}"
    stale.write_bytes(b"half")
    (folder / "search-0.faiss").write_bytes(b"old")
    with Index.open(folder) as idx:  # on close snapshot 2: 0 goes, 1 (the one before) stays
        idx.add(embeddings=square[:1])
    names = sorted(p.name for p in folder.iterdir() if "faiss" in p.name)
    assert names == ["search-1.faiss", "search-2.faiss"]
