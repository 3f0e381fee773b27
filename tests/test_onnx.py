"""ONNX export of the image branch: onnxruntime heatmaps match PyTorch, metadata round-trips."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

import clamp
from clamp.models.pose_models import CLAMP
from clamp.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    OnnxModelInfo,
    OnnxPoseModel,
    export_onnx,
)

# CLAMP on the tiny ResNet in the default suite; the ViT encoder and SimpleBaseline exports (seconds each)
# in the slow suite.
MODELS = [
    "clamp_tiny_rn",
    pytest.param("clamp_tiny_vit", marks=pytest.mark.slow),
    pytest.param("simplebaseline_tiny_rn", marks=pytest.mark.slow),
]


def model_with_visible_outputs(name: str) -> nn.Module:
    """A tiny random model whose heatmaps are O(0.1), so that a 1e-4 tolerance means something.

    The mmpose head init (std 0.001) gives heatmaps near 1e-10, which any export would match; PyTorch's
    default conv init and gamma = 1 (the context decoder's full weight) make every part count.
    """
    torch.manual_seed(0)
    model = clamp.create_model(name, keypoints="ap10k")
    for module in model.keypoint_head.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.reset_parameters()
    if isinstance(model, CLAMP):
        with torch.no_grad():
            model.gamma.fill_(1.0)
    return model


@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory):
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript: pip install 'clamp-pose[onnx]'")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'clamp-pose[onnx]'")
    model = model_with_visible_outputs(request.param).train()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx")
    assert model.training, "export must leave the model in the mode it had"
    assert "initial_prompt_embeddings" not in vars(model), "export must not leave its patch behind"
    return model.eval(), OnnxPoseModel(path, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_heatmaps_match_pytorch(exported, batch):
    model, onnx_model = exported
    images = torch.from_numpy(np.random.default_rng(batch).normal(size=(batch, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        expected = model(images).heatmaps.numpy()
    heatmaps = onnx_model.heatmaps(images.numpy())
    assert heatmaps.shape == expected.shape == (batch, 17, 16, 16)
    assert expected.std() > 0.01
    assert np.abs(heatmaps - expected).max() < 1e-4


def test_exported_graph_takes_only_images(exported):
    _, onnx_model = exported
    inputs, outputs = onnx_model.session.get_inputs(), onnx_model.session.get_outputs()
    assert [i.name for i in inputs] == [INPUT_NAME] and [o.name for o in outputs] == [OUTPUT_NAME]
    assert inputs[0].shape[1:] == [3, 64, 64] and isinstance(inputs[0].shape[0], str), "batch must be dynamic"
    assert inputs[0].type == "tensor(float)"
    onnx = pytest.importorskip("onnx")
    weights = [init.name for init in onnx.load(str(onnx_model.path)).graph.initializer]
    assert any(name.startswith("model.image_encoder.") for name in weights)
    text_side = ("model.text_encoder.", "model.prompt_learner.", "model.prompt_encoder.", "model.spatial_head.")
    assert not [name for name in weights if name.startswith(text_side)], "the text side must be baked in"


def test_metadata_round_trips_and_rebuilds_the_model(exported):
    model, onnx_model = exported
    assert onnx_model.keypoint_spec == model.keypoint_spec
    assert onnx_model.input_size == model.input_size and onnx_model.heatmap_size == model.heatmap_size
    assert onnx_model.info.model_class == type(model).__name__
    assert onnx_model.info.model_config == json.loads(json.dumps(model.config))
    rebuilt = clamp.create_model(**onnx_model.info.model_config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_wrong_image_shape_is_refused_with_the_expected_shape(exported):
    _, onnx_model = exported
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        onnx_model.heatmaps(np.zeros((1, 3, 32, 32), np.float32))


def test_metadata_without_a_config_and_from_a_foreign_file():
    model = clamp.create_model("simplebaseline_tiny_rn", keypoints="animalpose")
    model.config = None
    metadata = OnnxModelInfo.from_model(model).to_metadata()
    assert "clamp.model_config" not in metadata
    info = OnnxModelInfo.from_metadata(metadata, "model.onnx")
    assert info.model_config is None and info.keypoint_spec.num_keypoints == 20
    with pytest.raises(ValueError, match=r"other\.onnx lacks the metadata .*clamp\.keypoint_spec"):
        OnnxModelInfo.from_metadata({}, "other.onnx")


def test_missing_onnxruntime_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install 'clamp-pose\[onnx\]'"):
        OnnxPoseModel(tmp_path / "model.onnx")


def test_missing_onnxscript_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"ONNX export needs the 'onnxscript' package: pip install"):
        export_onnx(clamp.create_model("simplebaseline_tiny_rn"), tmp_path / "model.onnx")


def test_provenance_round_trips_in_the_metadata_and_is_optional():
    model = clamp.create_model("simplebaseline_tiny_rn", keypoints="ap10k")
    provenance = {"pretrained": None, "synthetic_data": True, "dataset": "ap10k"}
    info = OnnxModelInfo.from_metadata(OnnxModelInfo.from_model(model, provenance).to_metadata(), "model.onnx")
    assert info.provenance == provenance
    assert OnnxModelInfo.from_metadata(OnnxModelInfo.from_model(model).to_metadata(), "m.onnx").provenance is None


def test_a_file_that_is_not_an_onnx_model_is_named(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'clamp-pose[onnx]'")
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"PK\x03\x04 a zip, not a protobuf" * 4)
    with pytest.raises(ValueError, match=r"cannot load .*weights\.onnx as an ONNX model"):
        OnnxPoseModel(path, providers=["CPUExecutionProvider"])
