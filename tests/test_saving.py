"""model.save / nc.load_model: round trips, optimizer state, atomicity, bad files."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import safetensors.numpy

import nanocnn as nc
import nanocnn.saving
from test_models import cifar_net, toy_model, toy_problem


@pytest.fixture
def trained():
    nc.set_random_seed(0)
    x, y = toy_problem(128)
    model = toy_model(dropout=0.25)
    model.compile(nc.optimizers.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    return model, x, y


def test_round_trip_gives_identical_predictions(trained, tmp_path):
    model, x, _ = trained
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = nc.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    assert loaded.layers[-2].rate == 0.25 and loaded.count_params() == model.count_params()
    assert loaded.metrics_names == ["loss", "accuracy"]
    assert isinstance(loaded.optimizer, nc.optimizers.Adam)
    assert loaded.optimizer.learning_rate == 0.01 and loaded.optimizer.iterations == 8


def test_file_is_plain_safetensors_in_pytorch_layout(tmp_path):
    model = cifar_net()
    model.save(tmp_path / "cifar.safetensors")
    tensors = safetensors.numpy.load_file(tmp_path / "cifar.safetensors")
    assert tensors["conv2d.kernel"].shape == (16, 3, 2, 2)
    assert tensors["dense.kernel"].shape == (500, 1024) and tensors["dense_1.bias"].shape == (10,)
    np.testing.assert_array_equal(tensors["dense.kernel"], model.get_weights()[6])


def test_extra_metadata_is_kept_and_cannot_override_ours(trained, tmp_path):
    from safetensors import safe_open

    model, x, _ = trained
    path = tmp_path / "model.safetensors"
    model.save(path, metadata={"labels": "cat,dog"})
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata()["labels"] == "cat,dog" and f.metadata()["format"] == "nanocnn"
    np.testing.assert_array_equal(nc.load_model(path).predict(x), model.predict(x))
    with pytest.raises(ValueError, match="reserved"):
        model.save(tmp_path / "other.safetensors", metadata={"format": "mine"})
    with pytest.raises(TypeError, match="str to str"):
        model.save(tmp_path / "other.safetensors", metadata={"n": 3})
    assert not (tmp_path / "other.safetensors").exists()


def test_optimizer_state_resumes_training_exactly(trained, tmp_path):
    model, x, y = trained
    model.save(tmp_path / "ckpt.safetensors")
    resumed = nc.load_model(tmp_path / "ckpt.safetensors")
    assert model.test_on_batch(x, y) == resumed.test_on_batch(x, y)
    # One more optimizer step from the saved Adam state (m, v, iteration count), with the same
    # gradients on both: identical only if the whole state came back
    grads = [nc.tensor(np.full(w.shape, 0.01, np.float32)) for w in model.get_weights()]
    model.optimizer.apply(model.weights, grads)
    resumed.optimizer.apply(resumed.weights, grads)
    for p, q in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(p, q)


def test_without_optimizer_state(trained, tmp_path):
    model, x, y = trained
    model.save(tmp_path / "w.safetensors", include_optimizer=False)
    assert not any(k.startswith("optimizer.") for k in
                   safetensors.numpy.load_file(tmp_path / "w.safetensors"))
    loaded = nc.load_model(tmp_path / "w.safetensors")
    assert loaded.optimizer.iterations == 8 and loaded.optimizer._slots == []
    loaded.fit(x, y, epochs=1, verbose=0)  # fresh state, still trains
    other = toy_model(dropout=0.25)
    other.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_uncompiled_model_round_trip(tmp_path):
    model = nc.Sequential([nc.layers.Input((5,)), nc.layers.Dense(3, activation="sigmoid")])
    model.save(tmp_path / "m.safetensors")
    loaded = nc.load_model(tmp_path / "m.safetensors")
    assert loaded.loss is None and loaded.layers[0].activation == "sigmoid"
    x = np.ones((2, 5), np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_truncated_file_is_a_clear_error(trained, tmp_path):
    model, _, _ = trained
    path = tmp_path / "m.safetensors"
    model.save(path)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20, 4):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a valid safetensors file .truncated or corrupt"):
            nc.load_model(bad)


def test_random_bytes_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        nc.load_model(junk)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.numpy.save_file({"w": np.ones(3, np.float32)}, foreign, metadata={"a": "b"})
    with pytest.raises(ValueError, match="is a safetensors file but not a nanocnn model"):
        nc.load_model(foreign)
    with pytest.raises(FileNotFoundError, match="no such file"):
        nc.load_model(tmp_path / "missing.safetensors")


def test_newer_format_and_broken_metadata(trained, tmp_path):
    model, _, _ = trained
    tensors, meta = nanocnn.saving._metadata(model, False)
    newer = tmp_path / "newer.safetensors"
    safetensors.numpy.save_file(tensors, newer, metadata={**meta, "format_version": "99"})
    with pytest.raises(ValueError, match="format version 99, newer than"):
        nc.load_model(newer)
    broken = tmp_path / "broken.safetensors"
    safetensors.numpy.save_file(tensors, broken, metadata={**meta, "model_config": "{oops"})
    with pytest.raises(ValueError, match="'model_config' is missing or not valid JSON"):
        nc.load_model(broken)
    config = json.loads(meta["model_config"])
    config["config"]["layers"][-1]["config"]["units"] = 3
    shape = tmp_path / "shape.safetensors"
    safetensors.numpy.save_file(tensors, shape,
                                metadata={**meta, "model_config": json.dumps(config)})
    with pytest.raises(ValueError, match=r"tensor 'dense_1.kernel' has shape \(2, 16\), the model "
                                         r"expects \(3, 16\)"):
        nc.load_model(shape)


def test_a_crash_mid_save_leaves_the_old_file(trained, tmp_path, monkeypatch):
    model, x, _ = trained
    path = tmp_path / "m.safetensors"
    model.save(path)
    good = path.read_bytes()

    def crash_halfway(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    model.set_weights([w + 1 for w in model.get_weights()])
    monkeypatch.setattr(nanocnn.saving, "_write_all", crash_halfway)
    with pytest.raises(OSError, match="simulated"):
        model.save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.safetensors"]  # no temporary file left behind
    monkeypatch.undo()
    model.save(path)
    np.testing.assert_array_equal(nc.load_model(path).predict(x), model.predict(x))


def test_save_keeps_permissions_and_refuses_directories(trained, tmp_path):
    model, _, _ = trained
    path = tmp_path / "m.safetensors"
    model.save(path)
    os.chmod(path, 0o640)
    model.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    with pytest.raises(IsADirectoryError):
        model.save(tmp_path)
