"""nanocnn.benchmark: the harness on tiny shapes (fast), its output files, and the equality check
that guards every timing."""
from __future__ import annotations

import json

import numpy as np
import pytest

import nanocnn as nc
from nanocnn import benchmark
from nanocnn.benchmark import networks, ops, peak, report, train
from nanocnn.benchmark.timing import MismatchError, check_close

pytest.importorskip("torch")

TINY = networks.Net("tiny", (3, 8, 8), (networks.Conv(4, 2, "same"), networks.Pool(2),
                                        networks.Conv(5, 3, "valid"), networks.Dense(6),
                                        networks.Dense(3)), "softmax", seed_batch=4)
TINY_BINARY = networks.Net("tiny_binary", (2, 6, 6), (networks.Conv(3, 3, "valid"),
                                                      networks.Pool(2), networks.Dense(1)),
                           "sigmoid", seed_batch=2)
PEAK = {"gflops": 100.0, "gbs": 10.0}  # a stand-in; the real one is measured in test_cpu_peak


@pytest.fixture
def quick_peak(monkeypatch):
    """The real peak measurements, made short (the full ones take a few seconds)."""
    real = peak.cpu_peak
    monkeypatch.setattr(peak, "cpu_peak", lambda threads, seconds: real(threads, 0.01, 1, 8 << 20))


def tiny_cases():
    return (ops.network_cases(TINY, 2) + ops.network_cases(TINY_BINARY, 3)
            + ops.conv3x3_cases(1, layers=((4, 5),)))


def fast_config():
    return benchmark.Config(min_time=0.0, min_reps=3)


def check_rows(rows):
    assert rows
    for r in rows:
        assert r["nanocnn_s"] > 0 and r["torch_s"] > 0
        layouts = [r["torch_nchw_s"]] + ([r["torch_channels_last_s"]]
                                         if r["torch_channels_last_s"] is not None else [])
        assert r["torch_s"] == min(layouts)
        assert r["ratio"] == pytest.approx(r["torch_s"] / r["nanocnn_s"])
        assert r["nanocnn_rate"] > 0 and r["rate_unit"] in ("GFLOP/s", "GB/s")


def test_ops_rows_cover_every_op_and_direction():
    result = ops.run(fast_config(), PEAK, cases=tiny_cases(), log=lambda _: None)
    rows = result["rows"]
    check_rows(rows)
    seen = {(r["op"], r["direction"]) for r in rows}
    assert seen == {(op, d) for op in ("conv2d", "max_pool2d", "relu", "linear")
                    for d in ("forward", "backward")} | {
        ("softmax_cross_entropy", "fwd+bwd"), ("sigmoid_bce", "fwd+bwd")}
    conv = next(r for r in rows if r["op"] == "conv2d" and r["direction"] == "forward")
    assert conv["flops"] == 2 * 2 * 4 * 8 * 8 * 3 * 2 * 2  # 2 * N * K * P * Q * C * R * S
    assert conv["nanocnn_peak_fraction"] == pytest.approx(conv["nanocnn_rate"] / 100.0)
    # Conv and pooling are timed in both PyTorch layouts, the rest in one.
    assert all((r["torch_channels_last_s"] is not None) == (r["op"] in ("conv2d", "max_pool2d"))
               for r in rows)


def test_main_writes_json_markdown_and_png(tmp_path, monkeypatch, capsys, quick_peak):
    monkeypatch.setattr(ops, "default_cases", lambda batches, quick: tiny_cases())
    rc = benchmark.main(["--quick", "--only", "ops", "--threads", "1", "--min-time", "0",
                         "--out", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "tiny, batch 2" in printed and "ratio" in printed and "GFLOP/s FP32" in printed
    data = json.loads((tmp_path / "ops-cpu-1t-quick.json").read_text())
    assert data["threads"] == 1 and data["device"] == "cpu"
    assert data["peak"]["gflops"] > 0 and data["peak"]["gbs"] > 0
    for key in ("cpu", "cores", "torch", "nanocnn", "numpy", "commit"):
        assert key in data["machine"]
    check_rows(data["rows"])
    assert len(data["rows"]) == sum(t["rows"] for t in data["totals"])
    markdown = (tmp_path / "ops-cpu-1t-quick.md").read_text()
    assert markdown.count("\n| conv") == sum(r["op"] == "conv2d" for r in data["rows"])
    pytest.importorskip("matplotlib")
    assert (tmp_path / "ops-cpu-1t-quick.png").read_bytes()[:4] == b"\x89PNG"


def wrong_copy(result, where):
    """A copy of a nanocnn result (Tensor or tuple) with one element changed."""
    def damage(t):
        a = np.array(t, dtype=np.float32)
        flat = a.reshape(-1)
        flat[where] += 0.01 * max(1.0, float(np.abs(flat).max()))
        return a
    if isinstance(result, tuple):
        return (damage(result[0]),) + tuple(result[1:])
    return damage(result)


@pytest.mark.parametrize("op", ["conv2d", "max_pool2d", "relu", "linear",
                                "softmax_cross_entropy", "sigmoid_bce"])
def test_equality_check_rejects_a_wrong_result(op):
    case = next(c for c in tiny_cases() if c.op == op)
    rng = np.random.default_rng(1)
    for row in ops.build_rows(case, "cpu", rng):
        ops.check_row(op, row)  # the real result passes
        right = row.nanocnn()
        if op in ("softmax_cross_entropy", "sigmoid_bce"):
            loss, grad = right
            for wrong in ((loss * 1.01 + 0.01, grad), (loss, wrong_copy(grad, 1))):
                row.nanocnn = lambda wrong=wrong: wrong
                with pytest.raises(MismatchError):
                    ops.check_row(op, row)
            continue
        for where in (0, -1):
            row.nanocnn = lambda where=where: wrong_copy(right, where)
            with pytest.raises(MismatchError, match="disagree"):
                ops.check_row(op, row)


def test_check_close_rejects_wrong_sizes_and_non_finite_values():
    check_close("ok", [np.ones(3)], [np.ones(3)], 0.0, 0.0)
    with pytest.raises(MismatchError, match="values"):
        check_close("size", [np.ones(3)], [np.ones(4)], 1.0, 1.0)
    with pytest.raises(MismatchError, match="non-finite"):
        check_close("nan", [np.array([1.0, np.nan])], [np.ones(2)], 1.0, 1.0)


def test_wrong_result_stops_main(tmp_path, monkeypatch, capsys, quick_peak):
    def broken_build(case, device, rng):
        rows = real_build(case, device, rng)
        for row in rows:
            right = row.nanocnn
            row.nanocnn = lambda right=right: wrong_copy(right(), 0)
        return rows

    real_build = ops.build_rows
    monkeypatch.setattr(ops, "default_cases", lambda batches, quick: tiny_cases()[:1])
    monkeypatch.setattr(ops, "build_rows", broken_build)
    assert benchmark.main(["--quick", "--only", "ops", "--threads", "1", "--out",
                           str(tmp_path)]) == 1
    assert "results differ" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written for a wrong result


def test_cpu_peak_is_measured_and_arguments_are_checked():
    assert nc._C.cpu_peak_isa() in ("avx512", "avx2", "generic")
    one = nc._C.cpu_peak_gflops(1, 0.05)
    assert 0.5 < one < 10_000  # GFLOP/s of one core: any real CPU lands in here
    assert nc._C.cpu_copy_gbs(1, 8 << 20, 0.02) > 0.1
    with pytest.raises(ValueError, match="threads"):
        nc._C.cpu_peak_gflops(0, 0.1)
    with pytest.raises(ValueError, match="seconds"):
        nc._C.cpu_peak_gflops(1, 0.0)
    with pytest.raises(ValueError, match="bytes"):
        nc._C.cpu_copy_gbs(1, 1000, 0.1)


def test_without_torch_main_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch now fails
    assert benchmark.main(["--quick"]) == 2
    assert 'pip install "nanocnn[bench]"' in capsys.readouterr().err


@pytest.mark.parametrize("net", [networks.CIFAR, networks.CATS_VS_DOGS, TINY, TINY_BINARY])
def test_torch_side_of_the_end_to_end_benchmark_matches_the_network(net):
    model = train.torch_model(net)
    assert sum(p.numel() for p in model.parameters()) == networks.parameter_count(net)
    weights = [p.detach().numpy() for p in model.parameters()]
    x, y = train.make_batch(net, 2, np.random.default_rng(0))
    nchw = train.TorchRunner(net, weights, "cpu", "nchw")
    nhwc = train.TorchRunner(net, weights, "cpu", "channels_last")
    probs = nchw.predict_on_batch(x)
    assert probs.shape == (2, net.classes)
    np.testing.assert_allclose(nhwc.predict_on_batch(x), probs, rtol=1e-5, atol=1e-6)
    assert nchw.train_on_batch(x, y) == pytest.approx(nhwc.train_on_batch(x, y), rel=1e-5)
    # The two layouts run different oneDNN kernels: their updates agree as train.check_models
    # compares nanocnn's (each tensor's as a whole), not to the last bits of every element (an
    # element-wise 1e-5 failed now and then, 5e-7 apart on a weight of 2.5e-3).
    eps32 = float(np.finfo(np.float32).eps)
    for i, (a, b, before) in enumerate(zip(nchw.weights(), nhwc.weights(), weights)):
        update = a.astype(np.float64) - before
        error = np.linalg.norm(b.astype(np.float64) - a)
        assert error <= 1e-2 * np.linalg.norm(update) + 4 * eps32 * np.linalg.norm(before), i


def test_seed_networks_have_the_parameter_counts_of_the_keras_examples():
    assert networks.parameter_count(networks.CIFAR) == 528_054
    assert networks.parameter_count(networks.CATS_VS_DOGS) == 9_494_561


@pytest.mark.skipif(not hasattr(nc, "Sequential"), reason="needs nanocnn's model API")
def test_end_to_end_rows_on_tiny_networks():
    cases = [train.TrainCase(TINY, 4), train.TrainCase(TINY_BINARY, 3)]
    result = train.run(fast_config(), cases=cases, log=lambda _: None)
    assert len(result["rows"]) == 4
    for r in result["rows"]:
        assert r["nanocnn_s"] > 0 and r["torch_s"] > 0
        assert r["ratio"] == pytest.approx(r["torch_s"] / r["nanocnn_s"])
        assert r["nanocnn_images_per_s"] == pytest.approx(r["batch"] / r["nanocnn_s"])
    assert report.train_markdown({**result, "device": "cpu", "threads": None,
                                  "machine": {"nanocnn": "x", "torch": "y", "cpu": "c",
                                              "cores": 1, "commit": None},
                                  "peak": {"how": "h", "gflops": 1.0}}).count("| tiny") == 4


@pytest.mark.skipif(not hasattr(nc, "Sequential"), reason="needs nanocnn's model API")
def test_end_to_end_check_rejects_a_wrong_weight_update():
    model_t = train.torch_model(TINY)
    weights = [p.detach().numpy().copy() for p in model_t.parameters()]
    x, y = train.make_batch(TINY, 4, np.random.default_rng(1))
    runners = {"nchw": train.TorchRunner(TINY, weights, "cpu", "nchw")}

    def model_with(lr_scale):
        model = train.nanocnn_model(TINY, "cpu")
        model.set_weights(weights)
        model.optimizer.learning_rate *= lr_scale
        return model

    assert train.check_models("tiny", model_with(1.0), runners, weights, x, y) < 1e-3
    runners = {"nchw": train.TorchRunner(TINY, weights, "cpu", "nchw")}
    with pytest.raises(MismatchError, match="update of weight tensor"):
        train.check_models("tiny", model_with(1.05), runners, weights, x, y)  # 5% too large
