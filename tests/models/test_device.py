"""Devices, GPU memory and precision: chosen before TensorFlow's first operation, refused in
one sentence when they cannot apply. GPUs are mocked (the machines have none)."""

import json
from dataclasses import replace

import numpy as np
import pytest

import cnnviz_cli
from cnnviz_cli import device
from cnnviz_cli.errors import CnnvizError


@pytest.fixture
def gpus(monkeypatch):
    """Two mocked GPUs (compute capability 8.6 and 7.5); returns the calls TensorFlow got."""
    import tensorflow as tf

    calls = []
    found = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    details = {found[0].name: {"device_name": "Mock A100", "compute_capability": (8, 6)},
               found[1].name: {"device_name": "Mock T4", "compute_capability": (7, 5)}}
    monkeypatch.setattr(device, "_configured", {})
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: found if kind == "GPU" else [])
    monkeypatch.setattr(tf.config, "set_visible_devices",
                        lambda shown, kind: calls.append(("visible", [d.name for d in shown])))
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth",
                        lambda gpu, on: calls.append(("growth", gpu.name, on)))
    monkeypatch.setattr(tf.config, "set_logical_device_configuration",
                        lambda gpu, configs: calls.append(
                            ("limit", gpu.name, configs[0].memory_limit)))
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda gpu: details[gpu.name])
    return calls


def test_auto_takes_the_first_gpu_and_lets_its_memory_grow(gpus):
    runtime = device.configure("auto")
    assert (runtime.device, runtime.device_name) == ("/GPU:0", "Mock A100")
    assert gpus == [("visible", ["/physical_device:GPU:0"]),
                    ("growth", "/physical_device:GPU:0", True)]


def test_gpu_n_shows_tensorflow_only_that_gpu(gpus):
    runtime = device.configure("gpu:1", precision="mixed")
    assert runtime.device == "/GPU:0"  # the only GPU TensorFlow sees
    assert runtime.device_name == "Mock T4" and runtime.precision == "mixed_float16"
    assert gpus[0] == ("visible", ["/physical_device:GPU:1"])


def test_cpu_hides_every_gpu(gpus):
    runtime = device.configure("cpu")
    assert runtime.device == "/CPU:0" and gpus == [("visible", [])]


def test_a_memory_cap_replaces_growth(gpus):
    device.configure("gpu", gpu_memory=512)
    assert gpus == [("visible", ["/physical_device:GPU:0"]),
                    ("limit", "/physical_device:GPU:0", 512)]


def test_devices_are_set_before_the_model_is_built(gpus, monkeypatch):
    from cnnviz_cli.models import resolve

    built = resolve.resolve_model
    monkeypatch.setattr(resolve, "resolve_model",
                        lambda request: (gpus.append(("build",)), built(request))[1])
    monkeypatch.setattr(device, "with_precision", lambda model, policy: model)
    cnnviz_cli.load_model("demo", device="gpu:1", precision="mixed")
    assert [call[0] for call in gpus] == ["visible", "growth", "build"]


@pytest.mark.parametrize("arguments, words", [
    ({"device": "gpu:2"}, "asks for GPU 2, but TensorFlow sees 2 GPU(s)"),
    ({"device": "tpu"}, "--device must be auto, cpu, gpu or gpu:N"),
    ({"device": "cpu", "gpu_memory": 100}, "--gpu-memory applies only when"),
    ({"device": "cpu", "precision": "mixed"}, "--precision mixed needs a GPU"),
])
def test_settings_that_cannot_apply_are_one_sentence(gpus, arguments, words):
    with pytest.raises(CnnvizError, match=words.replace("(", r"\(").replace(")", r"\)")):
        device.configure(**arguments)
    assert gpus == []  # refused before TensorFlow was told anything


def test_a_running_tensorflow_keeps_its_gpu_numbers_and_refuses_a_memory_cap(gpus, monkeypatch):
    import tensorflow as tf

    def running(shown, kind):
        raise RuntimeError("Visible devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_visible_devices", running)
    assert device.configure("gpu:1").device == "/GPU:1"
    monkeypatch.setattr(device, "_configured", {})
    with pytest.raises(CnnvizError, match="already running, so --gpu-memory"):
        device.configure("gpu:1", gpu_memory=256)


def test_the_device_cannot_change_within_a_process(gpus):
    device.configure("gpu:0")
    assert device.configure("auto").device == "/GPU:0"  # the same GPU: fine
    with pytest.raises(CnnvizError, match="start a new process"):
        device.configure("gpu:1")


@pytest.mark.parametrize("capability, policy", [((9, 0), "mixed_bfloat16"),
                                                ((7, 0), "mixed_float16")])
def test_mixed_precision_follows_the_gpu(capability, policy):
    assert device.mixed_policy(capability) == policy


def test_mixed_precision_is_refused_on_gpus_without_fast_float16():
    with pytest.raises(CnnvizError, match="compute capability 7.0 or higher.*has 6.1"):
        device.mixed_policy((6, 1))


def test_device_cpu_runs_and_is_recorded(run_cli, sample_dir, tmp_path):
    import tensorflow as tf

    run_cli("cam", sample_dir / "star.png", "--device", "cpu", "-o", tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["runtime"]["device"] == "/CPU:0"
    assert manifest["runtime"]["tensorflow"] == tf.__version__
    assert manifest["model"]["precision"] == "float32"
    assert "--device cpu" in manifest["command_line"]
    assert tf.config.get_visible_devices("GPU") == []


def test_the_precision_option_refuses_mixed_on_the_cpu(run_cli, sample_dir, tmp_path):
    result = run_cli("cam", sample_dir / "star.png", "--precision", "mixed", "-o", tmp_path / "o",
                     expect=2)
    assert "needs a GPU" in result.output and not (tmp_path / "o").exists()


def test_a_mixed_model_is_a_copy_and_its_maps_stay_float32(sample_dir, nested_model):
    """The mixed-precision path, run on the CPU (slow there, but it computes): GradCAM of the
    float16 copy of the demo model matches float32's, and the model given is untouched."""
    resolved = cnnviz_cli.load_model("demo")
    mixed = replace(resolved, model=device.with_precision(resolved.model, "mixed_float16"))
    assert resolved.model.layers[1].compute_dtype == "float32"
    assert {layer.compute_dtype for layer in mixed.model.layers[1:]} == {"float16"}
    image = str(sample_dir / "star.png")
    exact = cnnviz_cli.cam(resolved, image).maps[0]["gradcam"]
    half = cnnviz_cli.cam(mixed, image).maps[0]["gradcam"]
    assert half.dtype == np.float32
    assert np.corrcoef(exact.ravel(), half.ravel())[0, 1] > 0.99
    nested = device.with_precision(nested_model, "mixed_float16")
    assert nested.layers[0].layers[1].compute_dtype == "float16"
    assert nested_model.layers[0].layers[1].compute_dtype == "float32"
