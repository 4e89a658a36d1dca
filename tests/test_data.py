import gzip

import numpy as np
import pytest

from jaxar.data import load
from jaxar.data.pipeline import eval_batches, train_batches

FASHION = "/usr/share/datasets/fashion-mnist"


def test_digits_fixed_split():
    train, test = load("digits", "train"), load("digits", "test")
    assert (len(train), len(test)) == (1500, 297)
    assert train.info.event_shape == (8, 8, 1) and train.info.num_levels == 17
    x = np.stack([train[i]["x"] for i in range(len(train))])
    assert x.dtype == np.uint8 and x.max() == 16
    again = load("digits", "test")
    np.testing.assert_array_equal(test[5]["x"], again[5]["x"])
    # The documented split: a permutation with seed 0 of scikit-learn's order, the last 297
    # for test; ten classes, named as the loader is.
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.images))
    y = np.array([test[i]["label"] for i in range(len(test))])
    np.testing.assert_array_equal(y, d.target[order[1500:]])
    np.testing.assert_array_equal(test[7]["x"][..., 0], d.images[order[1500 + 7]])
    assert (train.info.name, train.info.num_classes, int(y.max()) + 1) == ("digits", 10, 10)


def test_batches_are_a_function_of_seed_and_step():
    src = load("digits", "train")
    full = train_batches(src, batch_size=32, seed=3)
    first = [next(full) for _ in range(60)]  # crosses the epoch boundary at 46.9 batches
    resumed = train_batches(src, batch_size=32, seed=3, start_step=45)
    for k in range(45, 60):
        np.testing.assert_array_equal(first[k]["x"], next(resumed)["x"])
    other = next(train_batches(src, batch_size=32, seed=4))
    assert not np.array_equal(other["x"], first[0]["x"])


def test_every_example_once_per_epoch_and_per_process_shards():
    src = load("digits", "train")
    n = len(src)  # 1500 = 2 processes x 25 batches x 30
    shards = [
        train_batches(src, batch_size=60, seed=0, process_index=i, process_count=2)
        for i in range(2)
    ]
    labels_seen = []
    for it in shards:
        xs = np.concatenate([next(it)["x"] for _ in range(n // 60)])
        labels_seen.append(xs.reshape(len(xs), -1))
    seen = np.concatenate(labels_seen)
    all_x = np.stack([src[i]["x"] for i in range(n)]).reshape(n, -1)
    key = lambda a: sorted(map(bytes, a))
    assert key(seen) == key(all_x)


def test_binarization_dynamic_vs_static():
    src = load("digits", "train")
    n = len(src)
    for mode in ("dynamic", "static"):
        it = train_batches(src, batch_size=n // 3, seed=0, binarize=mode)
        epochs = [np.concatenate([next(it)["x"] for _ in range(3)]) for _ in range(2)]
        assert set(np.unique(epochs[0])) == {0, 1}
        # Compare the same examples (the label + index order differs per epoch): sort rows.
        a, b = (sorted(map(bytes, e.reshape(n, -1))) for e in epochs)
        assert (a == b) == (mode == "static")


def test_eval_batches_cover_split_once_with_padding():
    test = load("digits", "test")
    batches = list(eval_batches(test, batch_size=100))
    assert [b["mask"].sum() for b in batches] == [100, 100, 97]
    assert all(b["x"].shape == (100, 8, 8, 1) for b in batches)
    np.testing.assert_array_equal(batches[2]["x"][97:], 0)


def test_fashion_mnist_idx():
    # Needs Debian's dataset-fashion-mnist (.ci/run installs it); the loader says how otherwise.
    test = load(f"idx:{FASHION}", "test")
    assert len(test) == 10_000
    assert test.info.event_shape == (28, 28, 1) and test.info.num_classes == 10
    assert 0 <= test[0]["label"] < 10


def _write_idx(path, array, magic_dtype=0x08):
    header = bytes([0, 0, magic_dtype, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.mark.parametrize(
    "code, dtype", [(0x08, "u1"), (0x09, "i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"),
                    (0x0E, ">f8")],
)  # fmt: skip
def test_read_idx_reads_every_idx_type_code_big_endian(tmp_path, code, dtype):
    from jaxar.data.images import read_idx

    a = (np.arange(24).reshape(2, 3, 4) * 37 - 300).astype(dtype)  # negative, > 1 byte
    if dtype in ("u1", "i1"):
        a = (np.arange(24).reshape(2, 3, 4) * 11 - (120 if dtype == "i1" else 0)).astype(dtype)
    _write_idx(tmp_path / "a.gz", a, magic_dtype=code)
    got = read_idx(str(tmp_path / "a.gz"))
    assert got.dtype == np.dtype(dtype) and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, a)


def test_read_idx_checks_the_whole_magic_and_reads_four_byte_dimensions(tmp_path):
    from jaxar.data.images import read_idx

    for magic in ([1, 0, 8, 1], [0, 1, 8, 1], [0, 0, 7, 1]):  # each byte of the magic checked
        (tmp_path / "bad").write_bytes(bytes(magic) + (3).to_bytes(4, "big") + b"abc")
        with pytest.raises(ValueError, match="not an IDX file"):
            read_idx(str(tmp_path / "bad"))
    # A dimension needs all four of its bytes: 2**24 + 5 (the body is short, so the error
    # names the shape the header gives).
    (tmp_path / "big").write_bytes(bytes([0, 0, 8, 2]) + (2**24 + 5).to_bytes(4, "big") * 2)
    with pytest.raises(ValueError, match=r"shape \(16777221, 16777221\)"):
        read_idx(str(tmp_path / "big"))


def test_idx_names_exactly_the_missing_files_and_finds_the_dotted_names(tmp_path):
    labels = np.arange(3, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 2, 2), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"missing \['train-labels-idx1-ubyte'\] "):
        load(f"idx:{tmp_path}", "train")
    _write_idx(tmp_path / "train-labels.idx1-ubyte.gz", labels)  # the other common spelling
    src = load(f"idx:{tmp_path}", "train")
    assert len(src) == 3
    info = src.info
    assert (info.name, info.event_shape, info.num_levels, info.num_classes) == (
        f"idx:{tmp_path}", (2, 2, 1), 256, 3)  # fmt: skip
    # Flat images (N, H*W) with good labels are refused, not read as something else.
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match=r"expected images \(N, H, W\) and labels \(N,\)"):
        load(f"idx:{tmp_path}", "train")


def test_idx_roundtrip_and_errors(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    labels = np.arange(5, dtype=np.uint8)
    for i, lab in [
        ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    ]:
        _write_idx(tmp_path / i, imgs)
        _write_idx(tmp_path / lab, labels)
    src = load(f"idx:{tmp_path}", "train")
    np.testing.assert_array_equal(src[2]["x"][..., 0], imgs[2])
    # A truncated file is reported by name with what was expected.
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") + (4).to_bytes(4, "big") * 2)
    with pytest.raises(ValueError, match="t10k-images.*truncated"):
        load(f"idx:{tmp_path}", "test")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load(f"idx:{tmp_path / 'missing'}", "train")


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*digits.*idx:ARG"):
        load("mnist", "train")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        load("digits", "valid")


def test_tfds_missing_data_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        load("tfds:mnist", "train", data_dir=str(tmp_path))


def test_tfds_data_source_through_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        src = load("tfds:mnist", "train")
        assert len(src) == 40
        assert src.info.event_shape == (28, 28, 1) and src.info.num_classes == 10
        ex = src[3]
        assert ex["x"].shape == (28, 28, 1) and ex["x"].dtype == np.uint8
        batch = next(train_batches(src, batch_size=8, seed=0, binarize="dynamic"))
        assert batch["x"].shape == (8, 28, 28, 1) and set(np.unique(batch["x"])) <= {0, 1}


def test_train_batches_apply_the_sources_transform_binarize_any_level_count_and_fill_a_batch():
    from jaxar.data import ArraySource, DataInfo

    # 3 levels: level 0 -> always 0, level 2 -> always 1, level 1 -> a coin (both seen).
    x = np.tile(np.array([0, 1, 2, 1], np.uint8).reshape(1, 2, 2, 1), (8, 1, 1, 1))
    src = ArraySource(x, None, DataInfo("three", (2, 2, 1), 3, 0))
    for mode in ("static", "dynamic"):
        b = np.concatenate([next(iter(train_batches(src, batch_size=8, seed=s, binarize=mode)))["x"]
                            for s in range(4)])  # fmt: skip
        assert set(np.unique(b)) == {0, 1}, mode
        assert (b[:, 0, 0] == 0).all() and (b[:, 1, 0] == 1).all(), mode
        assert 0.2 < b[:, [0, 1], [1, 1]].mean() < 0.8, mode

    # A source's own random train_transform is applied to every training example, with the
    # pipeline's per-element rng.
    class Marked(ArraySource):
        def train_transform(self, element, rng):
            return {**element, "x": element["x"] + np.uint8(100 + rng.integers(2))}

    marked = Marked(x, None, DataInfo("marked", (2, 2, 1), 256, 0))
    b = next(iter(train_batches(marked, batch_size=8, seed=0)))["x"]  # exactly one full batch
    assert b.shape == (8, 2, 2, 1) and (b >= 100).all() and set(np.unique(b[:, 0, 0])) <= {100, 101}
