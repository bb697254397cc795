"""The nanocnn command: argument errors everywhere; training end to end once the model API is in."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nanocnn as nc
from nanocnn import cli

needs_model_api = pytest.mark.skipif(not hasattr(nc, "Sequential"),
                                     reason="the model API (nanocnn.Sequential) is not in this build yet")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_no_command_and_unknown_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--dataset", "imagenet"])
    assert exit_.value.code == 2
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "mnist", "--data-dir", "x"])  # one source only


def test_train_bad_values(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--epochs", "0")
    assert code == 2 and "--epochs must be >= 1, got 0" in err
    code, _, err = run(capsys, "train", "--device", "tpu")
    assert code == 2 and "--device must be cpu or cuda" in err
    code, _, err = run(capsys, "train", "--output", str(tmp_path / "no" / "m.safetensors"))
    assert code == 2 and "does not exist" in err


@needs_model_api
def test_train_bad_data_dir(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--data-dir", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "train", "--data-dir", str(tmp_path / "empty"))
    assert code == 2 and "no class sub-folders" in err


def test_predict_missing_files(capsys, tmp_path):
    code, _, err = run(capsys, "predict", str(tmp_path / "m.safetensors"), "a.png")
    assert code == 2 and "not found" in err
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"garbage")
    code, _, err = run(capsys, "predict", str(model), str(tmp_path / "nope.png"))
    assert code == 2 and "nope.png" in err
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    code, _, err = run(capsys, "predict", str(model), str(image))
    assert code == 2 and "not a safetensors model file" in err


def test_bench_forwards_its_arguments(monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("nanocnn.benchmark")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "nanocnn.benchmark", fake)
    monkeypatch.setattr(nc, "benchmark", fake, raising=False)
    assert cli.main(["bench", "ops", "--threads", "2", "--help"]) == 0
    assert seen == [["ops", "--threads", "2", "--help"]]


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "nanocnn", "train", "--epochs", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--epochs must be >= 1" in done.stderr


@needs_model_api
def test_train_and_predict_on_an_image_folder(capsys, tmp_path, rng):
    PIL = pytest.importorskip("PIL.Image")
    root = tmp_path / "shapes"
    for name, colour in {"red": (230, 30, 30), "blue": (30, 30, 230)}.items():
        (root / name).mkdir(parents=True)
        for i in range(12):
            noise = rng.integers(-20, 21, (16, 16, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            PIL.fromarray(pixels).save(root / name / f"{i}.png")
    out = tmp_path / "m.safetensors"
    code, stdout, _ = run(capsys, "train", "--data-dir", str(root), "--image-size", "16",
                          "--epochs", "8", "--batch-size", "8", "--output", str(out), "--quiet")
    assert code == 0 and out.is_file(), stdout
    assert "test accuracy" in stdout
    code, stdout, _ = run(capsys, "predict", str(out), str(root / "red" / "0.png"),
                          str(root / "blue" / "3.png"))
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].split(": ")[1].startswith("red") and lines[1].split(": ")[1].startswith("blue")
