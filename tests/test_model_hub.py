"""Models on the Hugging Face Hub: ``export format=hub`` writes the folder and its model card, and
``hf-hub:ORG/NAME`` loads it from a Hub cache in its real on-disk layout (offline; no network)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import errors
from hydra import compose, initialize_config_dir

import clamp
from clamp.cli import CONFIG_PATH
from clamp.errors import ClampError
from clamp.export import export, export_format
from clamp.model_hub import HubModelError, parse_hub_id
from clamp.predictor import Predictor
from tests.helpers import run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "lab/tiny-clamp"


def fill_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes], refs: tuple[str, ...] = ("main",)) -> Path:
    """A Hub cache entry as huggingface_hub lays it out: ``models--ORG--NAME/blobs/<hash>``, the files of
    ``snapshots/<commit>/`` as relative symlinks to their blobs, and ``refs/<ref>`` holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    for ref in refs:
        (repo / "refs" / ref).write_text(COMMIT)
    return snapshot


def folder_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache that the environment names after huggingface_hub was imported, offline."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    for name in ("HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def compose_export(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        return compose(config_name="export", overrides=[*overrides, "paths.output_dir=unused"])


@pytest.fixture(scope="module")
def hub_run(trained_run, tmp_path_factory) -> Path:
    """A copy of the trained tiny run as a finished run folder holds it: Hydra's overrides.yaml and a
    metrics.json (the fixture's run skips the test stage), beside its checkpoints and split manifest."""
    run = tmp_path_factory.mktemp("hub-run") / "run"
    shutil.copytree(trained_run, run)
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["+debug=tiny", "trainer.max_epochs=1"]))
    metrics = {"AP": 0.0123, "AP50": 0.0456, "AP75": 0.0012, "APM": 0.0, "APL": 0.0131, "AR": 0.0789}
    (run / "metrics.json").write_text(json.dumps({**metrics, "unreadable_samples": []}))
    return run


@pytest.fixture(scope="module")
def hub_folder(hub_run, tmp_path_factory) -> Path:
    """``python -m clamp.export ... format=hub`` of the run's last checkpoint, by the command."""
    out = tmp_path_factory.mktemp("hub-export") / "tiny-clamp"
    result = run_cli(
        "-m",
        "clamp.export",
        f"ckpt={hub_run / 'checkpoints' / 'last.ckpt'}",
        "format=hub",
        f"out={out}",
        f"repo={REPO}",
        f"hydra.run.dir={out.parent / 'run'}",
    )
    assert result.returncode == 0, result.stderr
    assert f"hf upload {REPO} {out}" in result.stdout
    return out


def card_metadata(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:].split("\n---\n", 1)[0])


# ---- loading ---------------------------------------------------------------------------------
def test_a_hub_model_in_the_cache_loads_offline_exactly_as_its_folder(hub_folder, hub_cache):
    assert sorted(p.name for p in hub_folder.iterdir()) == ["README.md", "clamp_model.json", "model.safetensors"]
    fill_hub_cache(hub_cache, REPO, folder_files(hub_folder), refs=("main", "v1"))
    from_folder = Predictor.from_pretrained(hub_folder, device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    crops = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32))
    expected, heatmaps = from_folder.predict(image)[0], from_folder.heatmaps(crops)
    for source in (f"hf-hub:{REPO}", f"hf-hub:{REPO}@v1"):
        from_hub = Predictor.from_pretrained(source, device="cpu")
        animal = from_hub.predict(image)[0]
        assert np.array_equal(animal.keypoints, expected.keypoints) and animal.score == expected.score, source
        assert torch.equal(from_hub.heatmaps(crops), heatmaps)
        assert from_hub.demo_reason == from_folder.demo_reason is not None
    name = json.loads((hub_folder / "clamp_model.json").read_text())["model"]["name"]
    model = clamp.create_model(name, pretrained=f"hf-hub:{REPO}")
    assert not model.training
    assert all(torch.equal(v, from_folder.model.state_dict()[k]) for k, v in model.state_dict().items())
    animal = Predictor(model, device="cpu").predict(image)[0]
    assert np.array_equal(animal.keypoints, expected.keypoints)


def test_the_predict_command_takes_a_hub_model(hub_folder, hub_cache, tmp_path):
    from clamp.predict import predict

    fill_hub_cache(hub_cache, REPO, folder_files(hub_folder))
    image = tmp_path / "cat.png"
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(image)
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        overrides = [f"input={image}", "progress=none", "device=cpu"]
        hub = compose("predict", [f"ckpt=hf-hub:{REPO}", f"output={tmp_path / 'hub'}", *overrides])
        folder = compose("predict", [f"ckpt={hub_folder}", f"output={tmp_path / 'folder'}", *overrides])
        onnx = compose("predict", [f"ckpt=hf-hub:{REPO}", "backend=onnx", f"output={tmp_path / 'x'}", *overrides])
    assert predict(hub)["images"] == predict(folder)["images"]
    with pytest.raises(ClampError, match="backend=onnx runs an .onnx file"):
        predict(onnx)


def test_create_model_from_the_hub_refuses_arguments_its_recipe_does_not_have(hub_folder, hub_cache):
    fill_hub_cache(hub_cache, REPO, folder_files(hub_folder))
    name = json.loads((hub_folder / "clamp_model.json").read_text())["model"]["name"]
    with pytest.raises(HubModelError, match=rf"has name='{name}'; call create_model\('{name}', pretrained="):
        clamp.create_model("clamp_rn50", pretrained=f"hf-hub:{REPO}")
    with pytest.raises(HubModelError, match="keypoints='ap10k'"):
        clamp.create_model(name, pretrained=f"hf-hub:{REPO}", keypoints="animalpose")
    with pytest.raises(HubModelError, match="has no use_prompt_encoder option"):
        clamp.create_model(name, pretrained=f"hf-hub:{REPO}", use_prompt_encoder=False)
    clamp.create_model(name, pretrained=f"hf-hub:{REPO}", keypoints="ap10k")  # as its recipe has it


def test_the_cache_folder_follows_the_environment_at_call_time_as_huggingface_hub_reads_it(tmp_path, monkeypatch):
    from clamp.model_hub import hub_cache_dir

    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "at-import"))
    assert hub_cache_dir() == str(tmp_path / "at-import")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == str(tmp_path / "home" / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == str(tmp_path / "cache")


def test_a_hub_model_missing_from_the_cache_offline_is_one_line_at_once(hub_cache):
    start = time.monotonic()
    with pytest.raises(HubModelError) as info:
        Predictor.from_pretrained("hf-hub:lab/absent")
    assert time.monotonic() - start < 2
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("hf-hub:lab/absent: clamp_model.json is not in the local Hub cache")
    assert str(hub_cache) in message and "HF_HUB_OFFLINE is set" in message and "hf download lab/absent" in message


def test_without_the_offline_flag_an_unreachable_hub_falls_back_to_the_cache_at_once(
    hub_folder, hub_cache, monkeypatch
):
    from clamp.models import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "network_reachable", lambda url: False)
    fill_hub_cache(hub_cache, REPO, folder_files(hub_folder))
    assert Predictor.from_pretrained(f"hf-hub:{REPO}", device="cpu").keypoint_spec.name == "ap10k"
    start = time.monotonic()
    with pytest.raises(HubModelError, match=r"^hf-hub:lab/absent: clamp_model.json .* cannot be reached"):
        Predictor.from_pretrained("hf-hub:lab/absent")
    assert time.monotonic() - start < 2


def hub_answer(kind: type[Exception]) -> Exception:
    """The error huggingface_hub raises for a Hub answer of that kind (a 404 or 403 response)."""
    import httpx

    status = 403 if kind is errors.GatedRepoError else 404
    return kind("answer", response=httpx.Response(status, request=httpx.Request("HEAD", "https://huggingface.co")))


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("RepositoryNotFoundError", "no such repository on the Hub (or it is private); check the name"),
        ("GatedRepoError", "the repository is gated; accept its terms"),
        ("RevisionNotFoundError", "it has no revision 'v9'; name an existing branch, tag or commit"),
        ("RemoteEntryNotFoundError", "it has no clamp_model.json; a CLAMP Hub model is the folder"),
    ],
)
def test_what_the_hub_answers_is_one_line_naming_the_repository(hub_cache, monkeypatch, kind, words):
    import huggingface_hub

    from clamp.models import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "network_reachable", lambda url: True)

    def answer(repo_id, filename, **kwargs):
        assert not kwargs["local_files_only"], "online, the Hub is asked"
        raise hub_answer(getattr(errors, kind))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", answer)
    with pytest.raises(HubModelError) as info:
        Predictor.from_pretrained("hf-hub:lab/x@v9")
    assert str(info.value).startswith(f"hf-hub:lab/x@v9: {words}") and "\n" not in str(info.value)


def test_a_repo_without_the_weights_or_with_a_bad_recipe_is_named_with_the_file(hub_folder, hub_cache):
    files = folder_files(hub_folder)
    fill_hub_cache(hub_cache, "lab/no-weights", {"clamp_model.json": files["clamp_model.json"]})
    with pytest.raises(HubModelError, match=r"^hf-hub:lab/no-weights: model.safetensors is not in the local"):
        Predictor.from_pretrained("hf-hub:lab/no-weights")
    record = json.loads(files["clamp_model.json"])
    record["preprocessing"]["box_padding"] = 1.5
    fill_hub_cache(hub_cache, "lab/other-padding", {**files, "clamp_model.json": json.dumps(record).encode()})
    with pytest.raises(HubModelError, match=r"^hf-hub:lab/other-padding: \S+clamp_model.json: preprocessing"):
        clamp.create_model(record["model"]["name"], pretrained="hf-hub:lab/other-padding")
    fill_hub_cache(hub_cache, "lab/not-clamp", {**files, "clamp_model.json": b'{"architectures": ["Bert"]}'})
    with pytest.raises(HubModelError, match=r"^hf-hub:lab/not-clamp: \S+clamp_model.json is not a CLAMP model"):
        Predictor.from_pretrained("hf-hub:lab/not-clamp")
    for bad in ("hf-hub:no-slash", "hf-hub:lab/x@", "hf-hub:../x"):
        with pytest.raises(HubModelError, match="is not a Hub model name"):
            parse_hub_id(bad)


class Payload:
    """Unpickling this creates ``marker``: what a hostile pickle in a repository does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_code_and_pickles_beside_the_export_are_never_fetched_read_or_run(hub_folder, hub_cache, tmp_path, monkeypatch):
    import huggingface_hub

    marker = tmp_path / "payload-ran"
    hostile = {
        "modeling_clamp.py": f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n".encode(),
        "pytorch_model.bin": pickle.dumps(Payload(marker)),
        "config.json": json.dumps({"auto_map": {"AutoModel": "modeling_clamp.Model"}}).encode(),
    }
    snapshot = fill_hub_cache(hub_cache, REPO, {**folder_files(hub_folder), **hostile})
    fetched = []
    original = huggingface_hub.hf_hub_download

    def recording(repo_id, filename, **kwargs):
        fetched.append(filename)
        return original(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load was called"))
    Predictor.from_pretrained(f"hf-hub:{REPO}", device="cpu")
    assert sorted(fetched) == ["clamp_model.json", "model.safetensors"]
    assert not marker.exists() and "modeling_clamp" not in __import__("sys").modules
    assert (snapshot / "modeling_clamp.py").is_file()  # it was there to be run, and was not


# ---- writing ---------------------------------------------------------------------------------
def test_the_model_card_carries_the_hub_metadata_and_the_runs_own_metrics(hub_folder, hub_run):
    card = (hub_folder / "README.md").read_text()
    meta = card_metadata(card)
    assert meta["license"] == "other" and meta["license_name"] == "unspecified"
    assert meta["library_name"] == "clamp-pose" and meta["pipeline_tag"] == "keypoint-detection"
    assert {"pose-estimation", "animal-pose", "clamp", "demo", "synthetic-data"} <= set(meta["tags"])
    assert "datasets" not in meta, "synthetic data is no Hub dataset"
    (index,) = meta["model-index"]
    assert index["name"] == "tiny-clamp"
    (result,) = index["results"]
    assert result["task"]["type"] == "keypoint-detection" and result["dataset"]["split"] == "test"
    metrics = json.loads((hub_run / "metrics.json").read_text())
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        k: metrics[k] for k in ("AP", "AP50", "AP75", "APM", "APL", "AR")
    }
    body = card.split("\n---\n", 1)[1]
    assert "DEMO MODEL: synthetic data, random CLIP weights - not real keypoints" in body
    assert f'clamp.Predictor.from_pretrained("hf-hub:{REPO}")' in body
    assert "python -m clamp.train +debug=tiny trainer.max_epochs=1" in body
    manifest = hub_run / "split_manifest.json"
    assert hashlib.sha256(manifest.read_bytes()).hexdigest() in body
    for source in json.loads(manifest.read_text())["sources"].values():
        assert source["sha256"] in body
    assert "0: left_eye, 1: right_eye, 2: nose" in body and "16: right_back_paw" in body
    assert "| 1.2 | 4.6 | 0.1 | 0.0 | 1.3 | 7.9 |" in body
    assert "Not specified at export" in body


def test_metrics_of_another_checkpoint_or_none_are_left_out_and_the_card_says_why(hub_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(hub_run, run)
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key] + 1
    torch.save(checkpoint, last)
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    export(compose_export(f"ckpt={last}", "format=hub", f"out={tmp_path / 'last'}", "license=mit"))
    card = (tmp_path / "last" / "README.md").read_text()
    assert "model-index" not in card_metadata(card) and card_metadata(card)["license"] == "mit"
    assert f"scores {best.name}, whose weights differ from last.ckpt: export that one" in card
    export(compose_export(f"ckpt={best}", "format=hub", f"out={tmp_path / 'best'}"))
    assert "model-index" in card_metadata((tmp_path / "best" / "README.md").read_text())
    (run / "metrics.json").unlink()
    shutil.rmtree(run / ".hydra")
    export(compose_export(f"ckpt={best}", "format=hub", f"out={tmp_path / 'bare'}"))
    card = (tmp_path / "bare" / "README.md").read_text()
    assert "model-index" not in card_metadata(card) and "has no metrics.json" in card
    assert "The training command is not recorded" in card


def test_format_hub_is_asked_for_by_name_and_refuses_an_onnx_name_or_a_bad_licence(hub_run, tmp_path):
    assert export_format("auto", tmp_path / "zoo") == "safetensors"
    assert export_format("hub", tmp_path / "zoo") == "hub"
    with pytest.raises(ClampError, match="format=hub writes a folder"):
        export_format("hub", tmp_path / "model.onnx")
    ckpt = hub_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ClampError, match="is not a Hub licence identifier"):
        export(compose_export(f"ckpt={ckpt}", "format=hub", f"out={tmp_path / 'x'}", "license=Apache 2.0"))
    with pytest.raises(HubModelError, match="is not a Hub model name"):
        export(compose_export(f"ckpt={ckpt}", "format=hub", f"out={tmp_path / 'x'}", "repo=no-slash"))
    assert not (tmp_path / "x").exists()
