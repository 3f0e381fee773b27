"""Files from strangers cannot run code or exhaust the machine: checkpoints, weight files, images, JSON,
output names."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clamp.checkpoint import UnsafeCheckpointError, read_checkpoint
from clamp.errors import ClampError
from clamp.files import ImageError, InputFileError, image_size, output_path, read_image_rgb, read_json
from tests.helpers import compose_train, fast_overrides, run_cli


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poisoned_checkpoint(good: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A real trained checkpoint whose hyper-parameters carry one pickled object that runs a command."""
    marker = tmp_path / "payload-ran"
    checkpoint = torch.load(good, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["evaluation"]["note"] = Payload(marker)
    path = tmp_path / "poisoned.ckpt"
    torch.save(checkpoint, path)
    return path, marker


@pytest.mark.parametrize("entry", ["eval", "predict"])
def test_a_checkpoint_with_a_code_payload_is_refused_and_the_payload_never_runs(
    trained_run, synthetic_root, tmp_path, entry
):
    path, marker = poisoned_checkpoint(trained_run / "checkpoints" / "last.ckpt", tmp_path)
    args = {
        "eval": ["-m", "clamp.eval", f"ckpt={path}"],
        "predict": ["-m", "clamp.predict", f"ckpt={path}", f"input={synthetic_root / 'data' / '000000000001.jpg'}"],
    }[entry]
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "refused to load" in result.stderr and "posix.system" in result.stderr
    assert not marker.exists()


def test_the_library_loader_and_export_refuse_the_payload_too(trained_run, tmp_path):
    import clamp
    from clamp.export import export
    from tests.helpers import CONFIG_PATH

    path, marker = poisoned_checkpoint(trained_run / "checkpoints" / "last.ckpt", tmp_path)
    for load in (read_checkpoint, clamp.load_model, clamp.Predictor.from_checkpoint):
        with pytest.raises(UnsafeCheckpointError, match="posix.system"):
            load(path)
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose("export", [f"ckpt={path}", f"out={tmp_path / 'export'}", "paths.output_dir=x"])
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        export(cfg)
    assert not marker.exists() and not (tmp_path / "export").exists()


def test_an_exported_model_folder_predicts_exactly_as_its_checkpoint(trained_run, tmp_path):
    import clamp

    result = run_cli(
        "-m",
        "clamp.export",
        f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"out={tmp_path / 'zoo'}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["clamp_model.json", "model.safetensors"]
    # Made to share: the mode the user's umask gives any new file (safetensors alone would write 0600).
    (tmp_path / "probe").write_text("x")
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "zoo").iterdir()}
    assert modes == dict.fromkeys(
        ["clamp_model.json", "model.safetensors"], (tmp_path / "probe").stat().st_mode & 0o777
    )
    from_checkpoint = clamp.Predictor.from_checkpoint(trained_run / "checkpoints" / "last.ckpt", device="cpu")
    from_folder = clamp.Predictor.from_pretrained(tmp_path / "zoo", device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    a, b = from_checkpoint.predict(image)[0], from_folder.predict(image)[0]
    assert np.array_equal(a.keypoints, b.keypoints) and a.score == b.score
    assert from_folder.demo_reason == from_checkpoint.demo_reason is not None


def hostile_torchscript(path: Path, marker: Path) -> None:
    """A zip laid out like OpenAI's TorchScript releases whose data.pkl runs a command when unpickled."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("RN50/data.pkl", pickle.dumps(Payload(marker), protocol=2))
        archive.writestr("RN50/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("RN50/version", "3\n")


def test_a_torchscript_weight_file_is_read_without_running_its_code(tmp_path, monkeypatch):
    from clamp.models.clip_backbone import load_open_clip
    from clamp.models.weight_files import UnsafeWeightsError

    # A program is never loaded: torch.jit.load must not even be called.
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load was called"))
    marker = tmp_path / "payload-ran"
    hostile_torchscript(tmp_path / "RN50.pt", marker)
    with pytest.raises(UnsafeWeightsError, match="posix.system"):
        load_open_clip("tiny-rn", str(tmp_path / "RN50.pt"), image_size=64)
    assert not marker.exists()


def png_bomb(path: Path, side: int) -> None:
    """A small file that decodes to ``side`` x ``side`` pixels (a decompression bomb for large ``side``)."""
    Image.new("L", (side, side)).save(path, optimize=True)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    png_bomb(path, 10_000)  # 100 megapixels in a few hundred kilobytes
    assert path.stat().st_size < 2**20
    with pytest.raises(ImageError, match="more than 89,478,485 pixels"):
        read_image_rgb(path)
    assert image_size(path, max_pixels=200_000_000) == (10_000, 10_000)  # a trusted file: the cap is raised


def test_the_pixel_cap_is_configurable_for_prediction(trained_run, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    png_bomb(photos / "big.png", 400)
    Image.new("RGB", (64, 48)).save(photos / "small.png")
    result = run_cli(
        "-m",
        "clamp.predict",
        f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"input={photos}",
        "max_image_pixels=10000",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [i["file_name"] for i in report["images"]] == ["small.png"]
    assert report["skipped"][0]["file_name"] == "big.png" and "pixels" in report["skipped"][0]["reason"]


def test_json_inputs_are_size_checked_before_parsing(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([{"file_name": "a.jpg", "bbox": [0, 0, 1, 1]}] * 1000))
    with pytest.raises(InputFileError, match="more than the 0 MiB allowed"):
        read_json(path, "boxes file", max_bytes=1000)
    assert len(read_json(path, "boxes file")) == 1000


@pytest.mark.parametrize(
    "name",
    ["../../escape.jpg", "/etc/passwd", "C:\\\\Windows\\\\x.jpg", "..", "a/../../b.jpg", "sub/dir/ok.jpg", ".hidden"],
)
def test_output_names_from_inputs_stay_inside_the_output_folder(tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    path = output_path(out, name, ".pose.jpg")
    assert out.resolve() in path.parents and path.name.endswith(".pose.jpg")


def test_a_boxes_file_with_hostile_names_writes_nothing_outside_the_output_folder(
    trained_run, synthetic_root, tmp_path
):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes((synthetic_root / "data" / "000000000001.jpg").read_bytes())
    coco = {
        "images": [
            {"id": 1, "file_name": "../../../escape.jpg"},
            {"id": 2, "file_name": "/tmp/abs.jpg"},
            {"id": 3, "file_name": "cat.jpg"},
        ],
        "annotations": [{"image_id": i, "bbox": [0, 0, 50, 50]} for i in (1, 2, 3)],
    }
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(coco))
    before = set(tmp_path.rglob("*"))
    result = run_cli(
        "-m",
        "clamp.predict",
        f"ckpt={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"input={photos}",
        f"boxes={boxes}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr
    created = set(tmp_path.rglob("*")) - before
    assert created and all((tmp_path / "out") in p.parents or p == tmp_path / "out" for p in created)
    assert not Path("/tmp/abs.jpg.pose.jpg").exists()


def test_dataset_file_names_cannot_reach_outside_and_never_crash(trained_run, tmp_path):
    from clamp.files import MissingFileError

    with pytest.raises((ImageError, MissingFileError)):
        read_image_rgb(tmp_path / ".." / ".." / "nonexistent" / "x.jpg")
    bad = tmp_path / "fake.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)  # a JPEG header and nothing else
    with pytest.raises(ClampError):
        read_image_rgb(bad)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_image_rgb(tmp_path / "truncated.jpg")


def test_resuming_through_the_trainer_uses_the_safe_loader(trained_run, synthetic_root, tmp_path):
    from clamp.train import train

    path, marker = poisoned_checkpoint(trained_run / "checkpoints" / "last.ckpt", tmp_path)
    with pytest.raises(UnsafeCheckpointError):
        train(compose_train(fast_overrides(synthetic_root, tmp_path / "run", f"ckpt_path={path}")))
    assert not marker.exists()
