"""nanocnn.viz writes PNGs; skipped without matplotlib. Models here are stand-ins with the spec's
methods (activations, predict, layers, get_weights); one test uses the real Sequential."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
from nanocnn import viz  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


class FakeLayer:
    def __init__(self, name, weights=()):
        self.name, self._weights = name, list(weights)

    def get_weights(self):
        return self._weights


class FakeModel:
    """Conv (4 maps of 6x6) -> Flatten -> Dense(3, softmax), by the spec's interfaces."""

    def __init__(self, rng):
        self.layers = [FakeLayer("conv2d"), FakeLayer("flatten"), FakeLayer("dense")]
        self.rng = rng

    def activations(self, x):
        n = len(x)
        return [self.rng.random((n, 6, 6, 4)), self.rng.random((n, 144)), self.predict(x)]

    def predict(self, x):
        p = self.rng.random((len(x), 3))
        return p / p.sum(axis=1, keepdims=True)


def is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_plot_history(tmp_path):
    history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8],
               "val_loss": [1.1, 0.8, 0.7], "val_accuracy": [0.4, 0.6, 0.7]}
    fig = viz.plot_history(history, path=tmp_path / "h.png")
    assert is_png(tmp_path / "h.png") and len(fig.axes) == 2

    class History:  # what fit returns
        pass

    h = History()
    h.history = {"loss": [1.0, 0.5]}
    assert len(viz.plot_history(h, path=tmp_path / "h2.png").axes) == 1
    with pytest.raises(ValueError, match="'loss'"):
        viz.plot_history({"accuracy": [1]})


def test_show_filters(tmp_path, rng):
    rgb = FakeLayer("conv", [rng.standard_normal((16, 3, 3, 3)), np.zeros(16)])
    viz.show_filters(rgb, path=tmp_path / "rgb.png")
    gray = FakeLayer("conv", [rng.standard_normal((4, 1, 5, 5)), np.zeros(4)])
    fig = viz.show_filters(gray, path=tmp_path / "gray.png")
    assert is_png(tmp_path / "rgb.png") and is_png(tmp_path / "gray.png")
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match=r"\(K, C, R, S\)"):
        viz.show_filters(FakeLayer("dense", [np.zeros((3, 4)), np.zeros(3)]))


def test_show_activations_and_predictions(tmp_path, rng):
    model = FakeModel(rng)
    viz.show_activations(model, rng.random((8, 8, 1)), path=tmp_path / "a.png")
    viz.show_predictions(model, rng.random((10, 8, 8, 3)), rng.integers(0, 3, 10),
                         ["a", "b", "c"], path=tmp_path / "p.png")
    assert is_png(tmp_path / "a.png") and is_png(tmp_path / "p.png")
    with pytest.raises(ValueError, match="same length"):
        viz.show_predictions(model, rng.random((4, 8, 8, 1)), [0, 1], ["a", "b", "c"])


def test_with_a_real_model(tmp_path, rng):
    import nanocnn as nc

    if not hasattr(nc, "Sequential"):
        pytest.skip("the model API (nanocnn.Sequential) is not in this build yet")
    model = nc.Sequential([nc.layers.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 1)),
                           nc.layers.MaxPooling2D(2), nc.layers.Flatten(),
                           nc.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((12, 10, 10, 1)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    viz.plot_history(history, path=tmp_path / "h.png")
    viz.show_activations(model, x[0], path=tmp_path / "a.png")
    viz.show_filters(model.layers[0], path=tmp_path / "f.png")
    viz.show_predictions(model, x, y, ["a", "b", "c"], path=tmp_path / "p.png")
    assert all(is_png(tmp_path / f"{n}.png") for n in "hafp")
