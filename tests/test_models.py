"""nc.Sequential: the seed networks, parity with equal torch.nn modules, fit/evaluate/predict,
callbacks, Ctrl-C, inputs and errors."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
import torch.nn as nn

import nanocnn as nc
from helpers import assert_close

L = nc.layers

# torch's padding="same" with an even kernel warns that it pads a copy; that is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")


def cifar_net(**kw):
    """The Keras tutorial's CIFAR-10 network (528,054 parameters)."""
    model = nc.Sequential(**kw)
    model.add(L.Conv2D(filters=16, kernel_size=2, padding="same", activation="relu",
                       input_shape=(32, 32, 3)))
    model.add(L.MaxPooling2D(pool_size=2))
    model.add(L.Conv2D(32, 2, padding="same", activation="relu"))
    model.add(L.MaxPooling2D(2))
    model.add(L.Conv2D(64, 2, padding="same", activation="relu"))
    model.add(L.MaxPooling2D(2))
    model.add(L.Flatten())
    model.add(L.Dense(500, activation="relu"))
    model.add(L.Dense(10, activation="softmax"))
    return model


def torch_cifar_net():
    return nn.Sequential(
        nn.Conv2d(3, 16, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 2, padding="same"), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1024, 500), nn.ReLU(), nn.Linear(500, 10)).double()


def cats_dogs_net():
    """The cats-vs-dogs network (9,494,561 parameters)."""
    return nc.Sequential([
        L.Conv2D(16, 3, activation="relu", input_shape=(150, 150, 3)), L.MaxPooling2D(2),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(512, activation="relu"), L.Dropout(0.5),
        L.Dense(1, activation="sigmoid")])


def torch_cats_dogs_net():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(17 * 17 * 64, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 1)).double()


def load_into_torch(model, module):
    with torch.no_grad():
        params = list(module.parameters())
        weights = model.get_weights()
        assert len(params) == len(weights)
        for p, w in zip(params, weights):
            assert tuple(p.shape) == w.shape
            p.copy_(torch.tensor(w, dtype=torch.float64))


def nchw(x):
    return torch.tensor(x, dtype=torch.float64).permute(0, 3, 1, 2)


def toy_problem(n, seed=0, size=8):
    """Images (n, size, size, 1): class 1 when the top half is brighter than the bottom."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 1)).astype(np.float32)
    y = (x[:, : size // 2].mean(axis=(1, 2, 3)) > x[:, size // 2:].mean(axis=(1, 2, 3)))
    return x, y.astype(np.int64)


def toy_model(last="softmax", units=2, dropout=0.0):
    layers = [L.Conv2D(8, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
              L.MaxPooling2D(2), L.Flatten(), L.Dense(16, activation="relu")]
    if dropout:
        layers.append(L.Dropout(dropout, seed=1))
    layers.append(L.Dense(units, activation=last))
    return nc.Sequential(layers)


# ---- the seed networks ---------------------------------------------------------------------------


def test_cifar_net_parameters_and_summary(capsys):
    model = cifar_net()
    assert model.count_params() == 528_054
    model.summary()
    text = capsys.readouterr().out
    assert "Total params: 528,054" in text
    for line in ["conv2d (Conv2D)", "(None, 32, 32, 16)", "max_pooling2d_2 (MaxPooling2D)",
                 "(None, 4, 4, 64)", "flatten (Flatten)", "(None, 1024)", "512,500",
                 "dense_1 (Dense)", "5,010", "Forward FLOPs per example",
                 "Activation memory for a batch of 32"]:
        assert line in text, line
    assert [l.output_shape for l in model.layers][-3:] == [(None, 1024), (None, 500), (None, 10)]


def test_cats_dogs_net_parameters():
    model = cats_dogs_net()
    model.compile(optimizer=nc.optimizers.RMSprop(learning_rate=0.001),
                  loss="binary_crossentropy", metrics=["accuracy"])
    assert model.count_params() == 9_494_561
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 9,494,561 (36.22 MB)" in lines
    assert model.layers[5].output_shape == (None, 17, 17, 64)


@pytest.mark.parametrize("net", ["cifar", "cats_dogs"])
def test_seed_networks_match_torch(net, device):
    nc.set_random_seed(3)
    model = cifar_net() if net == "cifar" else cats_dogs_net()
    module = torch_cifar_net() if net == "cifar" else torch_cats_dogs_net()
    model.to(device)
    load_into_torch(model, module)
    module.eval()
    size = 32 if net == "cifar" else 150
    x = np.random.default_rng(0).random((3, size, size, 3), dtype=np.float32)
    with torch.no_grad():
        logits = module(nchw(x))
    expected = torch.softmax(logits, 1) if net == "cifar" else torch.sigmoid(logits)
    assert_close(model.predict(x), expected.numpy(), "model_forward")


@pytest.mark.parametrize("nesterov", [False, True])
def test_training_steps_match_torch(nesterov, device):
    """Three SGD(momentum) steps of the CIFAR net on a fixed batch: loss, accuracy and every
    parameter as torch.optim.SGD with float64 autograd gives them."""
    nc.set_random_seed(5)
    model = cifar_net()
    module = torch_cifar_net()
    load_into_torch(model, module)
    model.compile(nc.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=nesterov),
                  "sparse_categorical_crossentropy", ["accuracy"], device=device)
    topt = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov)
    rng = np.random.default_rng(1)
    x = rng.random((16, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    for _ in range(3):
        loss, acc = model.train_on_batch(x, y)
        topt.zero_grad()
        logits = module(nchw(x))
        tloss = nn.functional.cross_entropy(logits, torch.tensor(y))
        tacc = (logits.argmax(1).numpy() == y).mean()
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) <= 1e-5 * max(1.0, tloss.item())
        assert acc == pytest.approx(tacc)
    for i, (p, w) in enumerate(zip(module.parameters(), model.get_weights())):
        assert_close(w, p.detach().numpy(), "model_train_step", err_msg=f"weight {i}")


def test_binary_training_step_matches_torch():
    nc.set_random_seed(2)
    model = nc.Sequential([L.Flatten(input_shape=(4, 4, 2)), L.Dense(8, activation="relu"),
                           L.Dense(1, activation="sigmoid")])
    module = nn.Sequential(nn.Flatten(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    load_into_torch(model, module)
    model.compile(nc.optimizers.SGD(0.5), "binary_crossentropy", ["accuracy"])
    topt = torch.optim.SGD(module.parameters(), lr=0.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4, 4, 2)).astype(np.float32)
    y = rng.integers(0, 2, 10)
    for _ in range(2):
        model.train_on_batch(x, y)
        topt.zero_grad()
        tloss = nn.functional.binary_cross_entropy_with_logits(
            module(nchw(x))[:, 0], torch.tensor(y, dtype=torch.float64))
        tloss.backward()
        topt.step()
    for p, w in zip(module.parameters(), model.get_weights()):
        assert_close(w, p.detach().numpy(), "model_train_step")


# ---- fit / evaluate / predict ----------------------------------------------------------------


def test_fit_learns_a_small_problem(device):
    nc.set_random_seed(0)
    x, y = toy_problem(1200)
    model = toy_model(dropout=0.2)
    model.compile(optimizer=nc.optimizers.Adam(0.005), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], device=device)
    history = model.fit(x, y, epochs=8, batch_size=32, validation_split=0.25, verbose=0)
    h = history.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in h.values()) and history.epoch == list(range(8))
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["val_accuracy"][-1] >= 0.9
    loss, acc = model.evaluate(x[900:], y[900:], verbose=0)
    assert loss == pytest.approx(h["val_loss"][-1], rel=1e-5)
    assert acc == pytest.approx(h["val_accuracy"][-1])
    probs = model.predict(x[:50])
    assert probs.shape == (50, 2) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.history is history


@pytest.mark.parametrize("loss, last, units, target", [
    ("categorical_crossentropy", "softmax", 2, "one_hot"),
    ("binary_crossentropy", "sigmoid", 1, "ids"),
    (nc.losses.SparseCategoricalCrossentropy(from_logits=True), None, 2, "ids"),
    (nc.losses.BinaryCrossentropy(from_logits=True), None, 1, "column"),
])
def test_fit_with_each_loss(loss, last, units, target):
    nc.set_random_seed(1)
    x, y = toy_problem(640)
    targets = {"one_hot": np.eye(2, dtype=np.float32)[y], "ids": y,
               "column": y[:, None].astype(np.float32)}[target]
    model = toy_model(last=last, units=units)
    model.compile(optimizer=nc.optimizers.Adam(0.005), loss=loss, metrics=["accuracy"])
    h = model.fit(x, targets, epochs=6, verbose=0).history
    assert h["loss"][-1] < h["loss"][0] and h["accuracy"][-1] > 0.8
    out = model.predict(x[:4])
    assert out.shape == (4, units)
    if last is not None:  # the activation is applied in predict, not in training
        assert np.all((out >= 0) & (out <= 1))


def test_evaluate_without_metrics_returns_the_loss():
    x, y = toy_problem(64)
    model = toy_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    loss = model.evaluate(x, y, verbose=0)
    assert isinstance(loss, float)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss"] and logs["loss"] == pytest.approx(loss)
    assert model.metrics_names == ["loss"]


def test_train_test_predict_on_batch():
    x, y = toy_problem(40)
    model = toy_model()
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.test_on_batch(x, y)
    for _ in range(30):
        loss, acc = model.train_on_batch(x, y)
    after = model.test_on_batch(x, y)
    assert after[0] < before[0] and 0.0 <= acc <= 1.0
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x))


def test_dropout_is_inactive_in_inference_and_seeded():
    x, y = toy_problem(32)
    nc.set_random_seed(4)
    model = toy_model(dropout=0.5)
    model.compile("sgd", "sparse_categorical_crossentropy")
    np.testing.assert_array_equal(model.predict(x), model.predict(x))
    assert model.test_on_batch(x, y) == model.test_on_batch(x, y)
    nc.set_random_seed(4)
    twin = toy_model(dropout=0.5)
    twin.compile("sgd", "sparse_categorical_crossentropy")
    for _ in range(3):
        assert model.train_on_batch(x, y) == twin.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_uint8_input_and_batch_of_one():
    nc.set_random_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    model = toy_model()
    out = model.predict(x)
    np.testing.assert_allclose(out, model.predict(x.astype(np.float32)), rtol=0, atol=0)
    np.testing.assert_array_equal(model.predict(x[:1]), out[:1])
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x[:1], np.array([1]), batch_size=1, verbose=0)
    model.fit(x, np.arange(5) % 2, batch_size=4, verbose=0)  # last batch of one


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 4, 3, 1), (3, 2, 6, 5), (0, 3, 3, 3)])
def test_from_channels_last_is_the_transpose(shape, rng):
    x = rng.standard_normal(shape, dtype=np.float32)
    t = nc._C.from_channels_last(x)
    assert tuple(t.shape) == (shape[0], shape[3], shape[1], shape[2])
    np.testing.assert_array_equal(np.asarray(t), x.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(N, H, W, C\), got 3 dimension"):
        nc._C.from_channels_last(x.reshape(shape[0], shape[1] * shape[2], shape[3]))


def test_every_input_layout_gives_the_same_predictions(rng):
    """float32 C-contiguous batches take the C++ conversion; other dtypes and strided views the
    numpy one: the same tensor either way."""
    model = cifar_net()
    x = rng.random((3, 32, 32, 3), dtype=np.float32)
    out = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(x.astype(np.float64), verbose=0), out)
    wide = np.zeros((3, 32, 64, 3), np.float32)
    wide[:, :, ::2] = x
    np.testing.assert_array_equal(model.predict(wide[:, :, ::2], verbose=0), out)


def test_grey_images_without_channel_axis():
    x, _ = toy_problem(6)
    model = toy_model()
    np.testing.assert_array_equal(model.predict(x[..., 0]), model.predict(x))


def test_wrong_input_shape_names_both_shapes():
    model = cifar_net()
    with pytest.raises(ValueError, match=r"expects input of shape \(None, 32, 32, 3\), got "
                                         r"\(4, 3, 32, 32\)"):
        model.predict(np.zeros((4, 3, 32, 32), np.float32))
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"\(None, 32, 32, 3\), got \(2, 28, 28, 3\)"):
        model.fit(np.zeros((2, 28, 28, 3), np.float32), np.zeros(2), verbose=0)
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 10\).*got 10"):
        model.fit(np.zeros((2, 32, 32, 3), np.float32), np.array([1, 10]), verbose=0)
    with pytest.raises(ValueError, match=r"one row per example \(2\), got shape \(3,\)"):
        model.fit(np.zeros((2, 32, 32, 3), np.float32), np.zeros(3), verbose=0)
    with pytest.raises(TypeError, match="x must hold numbers"):
        model.predict(np.array([["a"]]))


@pytest.mark.parametrize("last, loss, message", [
    ("relu", "categorical_crossentropy", "fused with a softmax output.*has activation 'relu'"),
    ("sigmoid", "sparse_categorical_crossentropy", "fused with a softmax output"),
    ("softmax", "binary_crossentropy", "fused with a sigmoid output.*from_logits=True"),
    ("softmax", nc.losses.CategoricalCrossentropy(from_logits=True),
     "from_logits=True expects the last layer 'dense_1' to output logits"),
    ("softmax", "mse", "loss must be one of"),
])
def test_compile_refuses_unfusable_losses(last, loss, message):
    model = toy_model(last=last)
    with pytest.raises(ValueError, match=message):
        model.compile("adam", loss)


def test_not_compiled_and_not_built_errors():
    model = nc.Sequential([L.Dense(3)])
    with pytest.raises(ValueError, match="not built yet"):
        model.summary()
    with pytest.raises(RuntimeError, match="compile the model first"):
        model.fit(np.zeros((2, 4)), np.zeros(2), verbose=0)
    with pytest.raises(ValueError, match="compile: metrics must name an accuracy"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["auc"])


def test_model_builds_from_the_first_data():
    model = nc.Sequential([L.Dense(4, activation="relu"), L.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(np.ones((6, 5), np.float32), np.arange(6) % 3, verbose=0)
    assert model.built and model.count_params() == 5 * 4 + 4 + 4 * 3 + 3
    assert model.layers[0].input_shape == (None, 5)


def test_input_layer_and_channels_first():
    a = nc.Sequential([L.Input(shape=(3, 8, 8), data_format="channels_first"),
                       L.Conv2D(4, 3, padding="same"), L.Flatten(), L.Dense(2)])
    assert len(a.layers) == 3 and a.layers[0].output_shape == (None, 4, 8, 8)
    b = nc.Sequential([L.Conv2D(4, 3, padding="same", input_shape=(8, 8, 3)), L.Flatten(),
                       L.Dense(2)])
    b.set_weights(a.get_weights())
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    np.testing.assert_array_equal(a.predict(x.transpose(0, 3, 1, 2)), b.predict(x))
    with pytest.raises(ValueError, match="must use one data_format"):
        nc.Sequential([L.Conv2D(4, 3, data_format="channels_first", input_shape=(3, 8, 8)),
                       L.MaxPooling2D(2, data_format="channels_last")])


def test_activations_give_every_layer_channels_last():
    model = cifar_net()
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    outs = model.activations(x)
    assert [o.shape[1:] for o in outs] == [tuple(l.output_shape[1:]) for l in model.layers]
    np.testing.assert_allclose(outs[-1], model.predict(x), rtol=1e-6)
    assert np.all(outs[0] >= 0)  # after the first Conv2D's ReLU


def test_get_set_weights_layouts_and_errors():
    model = cifar_net()
    shapes = [w.shape for w in model.get_weights()]
    assert shapes[:2] == [(16, 3, 2, 2), (16,)] and shapes[-4:] == [(500, 1024), (500,),
                                                                     (10, 500), (10,)]
    weights = model.get_weights()
    weights[0] += 1.0
    assert not np.array_equal(model.get_weights()[0], weights[0])  # copies
    model.set_weights(weights)
    np.testing.assert_array_equal(model.get_weights()[0], weights[0])
    with pytest.raises(ValueError, match="has 10 weight arrays, got 9"):
        model.set_weights(weights[:-1])
    weights[0] = weights[0].transpose(2, 3, 1, 0)
    with pytest.raises(ValueError, match=r"kernel must have shape \(16, 3, 2, 2\).*got "
                                         r"\(2, 2, 3, 16\)"):
        model.set_weights(weights)


def test_iterator_input(rng):
    x, y = toy_problem(256)

    class Batches:  # like nanocnn.data's flow(): endless, with len() = batches per epoch
        def __init__(self):
            self.i = 0

        def __len__(self):
            return 8

        def __iter__(self):
            return self

        def __next__(self):
            s = slice(self.i % 256, self.i % 256 + 32)
            self.i += 32
            return x[s], y[s]

    nc.set_random_seed(0)
    model = toy_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    batches = Batches()
    class Validation:  # re-iterable: starts over every epoch
        def __iter__(self):
            return iter([(x[:64], y[:64]), (x[64:96], y[64:96])])

    h = model.fit(batches, epochs=3, validation_data=Validation(), verbose=0).history
    assert batches.i == 3 * 8 * 32 and len(h["val_loss"]) == 3
    assert model.evaluate(iter([(x, y)]), verbose=0)[1] == \
        pytest.approx(model.evaluate(x, y, verbose=0)[1])
    np.testing.assert_array_equal(model.predict(iter([(x[:10], y[:10])])), model.predict(x[:10]))


def test_progress_bar_and_quiet(capsys):
    x, y = toy_problem(64)
    model = toy_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "loss=" in out and "accuracy=" in out and "img/s" in out
    model.fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "Epoch 2/2: loss=" in out


# ---- callbacks and interruption --------------------------------------------------------------


class Recorder(nc.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append((f"epoch_end {epoch}", sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append("train_end")


def test_callback_hooks_and_logs():
    x, y = toy_problem(64)
    model = toy_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    rec = Recorder()
    model.fit(x, y, epochs=2, batch_size=32, validation_data=(x, y), callbacks=[rec], verbose=0)
    assert rec.model is model and rec.params["epochs"] == 2 and rec.params["steps"] == 2
    batch = ["accuracy", "loss"]
    epoch = ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert rec.events == [
        "train_begin", "epoch_begin 0", ("batch", 0, batch), ("batch", 1, batch),
        ("epoch_end 0", epoch), "epoch_begin 1", ("batch", 0, batch), ("batch", 1, batch),
        ("epoch_end 1", epoch), "train_end"]


def test_early_stopping_restores_the_best_weights():
    x, y = toy_problem(128)
    model = toy_model()
    model.compile(nc.optimizers.SGD(0.05), "sparse_categorical_crossentropy", ["accuracy"])
    losses = iter([0.5, 0.4, 0.45, 0.46, 0.3])
    snapshots = []

    class FakeVal(nc.callbacks.Callback):  # a val_loss that stops improving after epoch 1
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(losses)
            snapshots.append(self.model.get_weights())

    stop = nc.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=5, callbacks=[FakeVal(), stop], verbose=0)
    assert len(history.history["loss"]) == 4 and stop.stopped_epoch == 3
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_and_lambda_and_scheduler(tmp_path):
    x, y = toy_problem(64)
    model = toy_model()
    model.compile(nc.optimizers.SGD(0.1), "sparse_categorical_crossentropy", ["accuracy"])
    seen = []
    cbs = [nc.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.safetensors")),
           nc.callbacks.ModelCheckpoint(str(tmp_path / "best.safetensors"), monitor="loss",
                                        save_best_only=True),
           nc.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1)),
           nc.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
               model.optimizer.learning_rate))]
    model.fit(x, y, epochs=3, callbacks=cbs, verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.safetensors", "m-01.safetensors", "m-02.safetensors", "m-03.safetensors"]
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])
    np.testing.assert_array_equal(nc.load_model(tmp_path / "m-03.safetensors").predict(x),
                                  model.predict(x))


@pytest.mark.parametrize("how", ["sigint", "keyboard_interrupt"])
def test_ctrl_c_stops_cleanly(how, capsys):
    x, y = toy_problem(320)
    model = toy_model()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    steps = []

    class Interrupt(nc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)
            if len(steps) == 14:  # during the second epoch (10 steps per epoch)
                if how == "sigint":
                    signal.raise_signal(signal.SIGINT)
                else:
                    raise KeyboardInterrupt

    before = signal.getsignal(signal.SIGINT)
    history = model.fit(x, y, epochs=5, callbacks=[Interrupt()], verbose=0)
    assert signal.getsignal(signal.SIGINT) is before
    assert len(steps) == 14  # no step after the interrupt
    assert len(history.history["loss"]) == 1  # the completed epoch
    assert "Training interrupted during epoch 2/5 after 4 step(s)" in capsys.readouterr().err
    assert model.optimizer.iterations == 14
    # the model is intact: it still predicts and trains
    assert np.all(np.isfinite(model.predict(x)))
    model.fit(x, y, epochs=1, verbose=0)


# ---- devices ---------------------------------------------------------------------------------


def test_model_stays_on_its_device(device):
    x, y = toy_problem(96)
    model = toy_model(dropout=0.3).to(device)
    model.compile("rmsprop", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=2, verbose=0)
    assert model.device.startswith(device)
    assert all(w.device == model.device for w in model.weights)
    assert all(t.device == model.device for s in model.optimizer._slots for t in s.values())
    cpu = toy_model()
    cpu.set_weights(model.get_weights())
    np.testing.assert_allclose(cpu.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError):
        toy_model().to("tpu")


# ---- the fused plan: Conv2D(relu) + MaxPooling2D(2) as one op, no input gradient first ---------


def test_plan_fuses_conv_relu_pool_and_skips_the_first_input_gradient():
    model = cifar_net()
    model.compile("sgd", "sparse_categorical_crossentropy")
    plan = model._training_plan()
    kinds = [(type(layer).__name__, type(pool).__name__ if pool else None) for layer, _, pool in plan]
    assert kinds == [("Conv2D", "MaxPooling2D")] * 3 + [("Flatten", None), ("Dense", None),
                                                         ("Dense", None)]
    assert [layer._needs_input_grad for layer in model.layers] == [False] + [True] * 8
    # Not fused: another activation, another pool, or the pool's output needed on its own.
    other = nc.Sequential([L.Conv2D(4, 3, activation="sigmoid", input_shape=(8, 8, 1)),
                           L.MaxPooling2D(2), L.Conv2D(4, 3, activation="relu", padding="same"),
                           L.MaxPooling2D(3), L.Flatten(), L.Dense(2, activation="softmax")])
    other.compile("sgd", "sparse_categorical_crossentropy")
    assert all(pool is None for _, _, pool in other._training_plan())


def test_fused_plan_trains_bit_for_bit_like_the_layer_by_layer_one(monkeypatch, device):
    """The fused ops run the same kernels as the layers one by one: same weights after a few
    steps, same predictions, same per-layer activations."""
    rng = np.random.default_rng(2)
    x = rng.random((8, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    results = []
    for fuse in (True, False):
        if not fuse:
            monkeypatch.setattr(L.Conv2D, "_fuses_with", lambda self, pool: False)
        nc.set_random_seed(3)
        model = cifar_net()
        model.compile(nc.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
                      device=device)
        losses = [model.train_on_batch(x, y) for _ in range(3)]
        results.append((losses, model.get_weights(), model.predict_on_batch(x),
                        [np.asarray(a) for a in model.activations(x[:2])]))
    (l1, w1, p1, a1), (l2, w2, p2, a2) = results
    assert l1 == l2
    for a, b in zip(w1 + [p1] + a1, w2 + [p2] + a2):
        np.testing.assert_array_equal(a, b)
