"""Users' data sets without a server (optimizer/datasets, optimizer/tasks/dataset_families.py):
the canonical form and its hash, every bad file refused with its reason before anything is
inflated or unpickled, the summary of each kind, and which family takes which data."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from optimizer.datasets import (
    DatasetError,
    Limits,
    canonical_npz,
    load_dataset,
    prepare_upload,
)
from optimizer.tasks import TaskOptionsError, load_task, validate_task_options
from optimizer.tasks.dataset_families import dataset_problem, families_for
from optimizer.tasks.registry import family_names, task_dataset
from tests.support.datasets import BAD_UPLOADS, images, npz, tabular, text, tokens

LIMITS = Limits(max_unpacked_bytes=8 * 1024 * 1024)


def prepared(body: bytes, limits: Limits = LIMITS):  # type: ignore[no-untyped-def]
    return prepare_upload(io.BytesIO(body), limits)


def test_the_name_is_the_hash_of_the_canonical_bytes_whatever_the_upload_looked_like() -> None:
    arrays = tabular()
    first = prepared(npz(**arrays))
    assert first.sha256 == hashlib.sha256(first.blob).hexdigest()
    for variant in (
        npz(compressed=True, **arrays),
        npz(y=arrays["y"], x=arrays["x"]),
        npz(x=arrays["x"].astype(">f4"), y=arrays["y"].astype(">i8")),
        npz(x=np.asfortranarray(arrays["x"]), y=arrays["y"]),
    ):
        assert prepared(variant).blob == first.blob
    # The canonical form is itself an .npz numpy reads, member by member the same arrays.
    with np.load(io.BytesIO(first.blob), allow_pickle=False) as back:
        np.testing.assert_array_equal(back["x"], arrays["x"])
        assert back["y"].dtype == np.int64
    with zipfile.ZipFile(io.BytesIO(first.blob)) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["x.npy", "y.npy"]
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    # Different arrays (or dtypes) are a different data set.
    other = dict(arrays, x=arrays["x"].astype(np.float64))
    assert prepared(npz(**other)).sha256 != first.sha256
    assert canonical_npz(arrays) == first.blob


@pytest.mark.parametrize("bad", BAD_UPLOADS, ids=lambda b: b.name)
def test_every_bad_file_is_refused_with_its_reason(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatasetError) as caught:
        prepared(bad.body)
    assert caught.value.code == bad.type
    assert caught.value.too_large is (bad.status == 413)


def test_object_arrays_are_refused_before_anything_is_unpickled(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pickle

    def never(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", never)
    monkeypatch.setattr(pickle, "loads", never)
    body = npz(x=np.array([object()] * 20, dtype=object), y=np.arange(20) % 2)
    with pytest.raises(DatasetError, match="object, record and sub-array dtypes"):
        prepared(body)


def test_a_zip_bomb_stops_at_the_directory() -> None:
    bomb = npz(compressed=True, x=np.zeros((200_000, 10), np.float32), y=np.zeros(200_000, int))
    assert len(bomb) < 100_000
    with pytest.raises(DatasetError, match="unpack to 9600") as caught:
        prepared(bomb)
    assert caught.value.too_large


def test_the_summary_of_each_kind() -> None:
    s = prepared(npz(**tabular())).summary
    assert (s.kind, s.rows, s.target, s.classes, s.row_shape) == ("tabular", 60, "classes", 3, (4,))
    rng = np.random.default_rng(0)
    reg = prepared(npz(x=rng.normal(size=(30, 2)), y=rng.normal(size=(30, 3)))).summary
    assert (reg.target, reg.outputs, reg.classes) == ("values", 3, None)
    img = prepared(
        npz(**images(channels=3), x_val=images()["x"][:4].repeat(3, -1), y_val=[0, 1, 0, 1])
    )
    assert (img.summary.kind, img.summary.validation_rows, img.summary.row_shape) == (
        "images",
        4,
        (6, 6, 3),
    )
    tok = prepared(npz(**tokens(vocab=20))).summary
    assert (tok.kind, tok.rows, tok.vocab, tok.target) == ("tokens", 400, 20, None)
    txt = prepared(npz(**text(repeat=2), x_val=np.array(["abc", "de"]))).summary
    assert (txt.kind, txt.rows, txt.validation_rows) == ("text", 90, 5)
    assert type(s).from_dict(s.to_dict()) == s


def test_a_stored_copy_is_read_only_after_its_hash_is_checked() -> None:
    up = prepared(npz(**tabular()))
    data = load_dataset(up.blob, up.sha256)
    assert data.summary == up.summary
    assert not data.arrays["x"].flags.writeable
    damaged = bytearray(up.blob)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(DatasetError) as caught:
        load_dataset(bytes(damaged), up.sha256)
    assert caught.value.code == "hash_mismatch"


@pytest.mark.parametrize(
    ("arrays", "accepted"),
    [
        (tabular(), ["logreg", "mlp"]),
        ({"x": tabular()["x"], "y": np.linspace(0, 1, 60)}, ["mlp"]),
        (images(), ["cnn", "logreg", "mlp"]),
        (images(side=40), ["logreg", "mlp"]),  # larger than the cnn takes
        (images(channels=5), ["logreg", "mlp"]),
        ({"x": images()["x"], "y": np.linspace(0, 1, 40)}, ["mlp"]),
        (tokens(), ["char-lm"]),
        (text(), ["char-lm"]),
        (text(repeat=2), []),  # too short for the default seq_len of 32
    ],
)
def test_each_family_takes_the_data_it_can_train_on(arrays, accepted) -> None:  # type: ignore[no-untyped-def]
    assert families_for(prepared(npz(**arrays)).summary) == accepted


def test_a_family_checks_its_options_against_the_data() -> None:
    summary = prepared(npz(**text(repeat=2))).summary  # 90 characters: 81 train, 9 held out
    assert dataset_problem("char-lm", {"seq_len": 8}, summary) is None
    problem = dataset_problem("char-lm", {"seq_len": 16}, summary)
    assert problem is not None and "18 training and 17 validation tokens" in problem
    assert "does not train on uploaded data sets" in str(dataset_problem("mlp-digits", {}, summary))


def test_families_need_a_data_set_named_by_its_hash() -> None:
    assert family_names() == ("cnn", "logreg", "mlp")
    with pytest.raises(TaskOptionsError, match="task 'mlp' needs option 'dataset'"):
        validate_task_options("mlp", {})
    for bad in ("0" * 63, "G" * 64, "A" * 64, 12):
        with pytest.raises(TaskOptionsError, match="64 lowercase hex digits"):
            validate_task_options("mlp", {"dataset": bad})
    sha = "ab" * 32
    options = validate_task_options("mlp", {"dataset": sha})
    assert options == {"dataset": sha, "widths": [64], "activation": "relu", "batch_size": 64}
    assert task_dataset("mlp", options) == sha
    assert task_dataset("char-lm", validate_task_options("char-lm", {})) is None
    assert task_dataset("mlp-digits", {"dataset": sha}) is None  # not one of its options


def test_a_task_on_a_data_set_is_built_only_from_that_data_set() -> None:
    up = prepared(npz(**tabular()))
    other = prepared(npz(**tabular(seed=1)))
    with pytest.raises(TaskOptionsError, match="load it and pass it as `dataset`"):
        load_task("mlp", {"dataset": up.sha256})
    with pytest.raises(TaskOptionsError, match="load it and pass it"):
        load_task("mlp", {"dataset": up.sha256}, dataset=load_dataset(other.blob, other.sha256))
