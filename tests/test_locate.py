"""Keypoints named at test time: ``Predictor.locate`` and ``predict ... names=`` (CLAMP's score maps, Eq. 3-4)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clamp import create_model
from clamp.errors import ClampError
from clamp.evaluation.decode import heatmap_to_image_coords
from clamp.keypoints import AP10K
from clamp.predictor import COARSE_MAPS_NOTE, Predictor
from tests.helpers import run_cli

NEW = "left ear tip"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("clamp_tiny_rn").eval()


def images(model, n: int = 2) -> torch.Tensor:
    w, h = model.input_size
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(1))


def test_a_trained_keypoints_own_words_give_exactly_its_score_map_of_forward(model):
    x = images(model)
    with torch.no_grad():
        expected = model(x, return_aux=True).score_maps
        maps, nearest = model.named_score_maps(x, [AP10K.prompt_words[4], AP10K.prompt_words[0]])
    assert nearest.tolist() == [4, 0]
    torch.testing.assert_close(maps, expected[:, [4, 0]], atol=1e-5, rtol=1e-5)


def test_an_unseen_name_takes_the_place_of_its_nearest_trained_keypoint(model):
    x = images(model)
    with torch.no_grad():
        maps, nearest = model.named_score_maps(x, [NEW])
        # The rule: the trained keypoint whose text embedding (shared context, before the prompt encoder)
        # is closest in cosine ...
        encode = model.text_encoder
        tokens = model.prompt_learner.name_tokens
        trained = F.normalize(encode(tokens, model.prompt_learner.contexts), dim=-1)
        n = int(nearest)
        # ... and the map equals forward() of the same weights with that keypoint's words replaced.
        words = list(AP10K.prompt_words)
        words[n] = NEW
        twin = create_model("clamp_tiny_rn", keypoints=replace(AP10K, prompt_words=tuple(words))).eval()
        twin.load_state_dict(model.state_dict())
        new = F.normalize(encode(twin.prompt_learner.name_tokens[n : n + 1], model.prompt_learner.contexts), dim=-1)
        expected = twin(x, return_aux=True).score_maps[:, n]
    assert n == int((new @ trained.T).argmax()) and not torch.equal(tokens, twin.prompt_learner.name_tokens)
    torch.testing.assert_close(maps[:, 0], expected, atol=1e-5, rtol=1e-5)


def test_locate_gives_each_names_map_its_peak_in_image_pixels_and_draws_them(model):
    predictor = Predictor(model, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    box = [10.0, 5.0, 80.0, 70.0]
    located = predictor.locate(image, [NEW, "tail end"], boxes=[box])
    (animal,) = located
    assert animal.keypoint_names == (NEW, "tail end") and animal.score_maps.shape == (2, *model.grid_size[::-1])
    assert set(animal.stand_in) <= set(AP10K.keypoint_names)
    crop = predictor._crops(0, image, [box])[0]
    center, scale = crop.center, crop.scale
    grid_w, grid_h = model.grid_size
    assert animal.cell_px == pytest.approx((scale[0] / grid_w, scale[1] / grid_h))
    for m, score_map in enumerate(animal.score_maps):
        y, x = np.unravel_index(score_map.argmax(), score_map.shape)
        cell = heatmap_to_image_coords(np.array([[[x, y]]], float), center[None], scale[None], (grid_w, grid_h))[0, 0]
        # The peak is the argmax cell, refined by at most a quarter cell (Eq. 1 decoding on the grid).
        assert np.all(np.abs(animal.peaks[m, :2] - cell) <= np.asarray(animal.cell_px) / 4 + 1e-6)
        assert animal.peaks[m, 2] == pytest.approx(score_map.max(), abs=1e-6)
    drawing = predictor.draw_score_maps(located)
    assert drawing.ndim == 3 and drawing.shape[2] == 3
    assert json.dumps(animal.to_dict())


def test_names_that_do_not_fit_and_models_without_text_prompts_get_one_clear_error(model):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ClampError, match="BPE tokens long"):
        Predictor(model, device="cpu").locate(image, ["the very long left hind paw tip"])
    with pytest.raises(ClampError, match="SimpleBaseline has none"):
        Predictor(create_model("simplebaseline_tiny_rn"), device="cpu").locate(image, [NEW])
    matrix = create_model("clamp_tiny_rn", prompt_source="learned_matrix")
    with pytest.raises(ClampError, match="learned prompt matrix"):
        Predictor(matrix, device="cpu").locate(image, [NEW])


def test_the_predict_command_writes_named_maps_their_peaks_and_says_they_are_coarse(trained_run, tmp_path):
    image = tmp_path / "in" / "cat.png"
    image.parent.mkdir()
    from PIL import Image

    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(image)
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "out"
    result = run_cli(
        "-m", "clamp.predict", f"ckpt={ckpt}", f"input={image.parent}", f"output={out}", f"names=[{NEW},tail end]"
    )
    assert result.returncode == 0, result.stderr
    assert COARSE_MAPS_NOTE in result.stdout
    entry = json.loads((out / "predictions.json").read_text())["images"][0]["named_keypoints"]
    assert entry["note"] == COARSE_MAPS_NOTE and (out / entry["drawing"]).is_file()
    assert list(entry["animals"][0]["keypoints"]) == [NEW, "tail end"]
    assert Path(entry["drawing"]).name == "cat.png.names.jpg"


def test_a_name_that_does_not_fit_stops_the_predict_command_before_any_output(trained_run, tmp_path):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "out"
    too_long = "names=[the tip of the left ear]"
    result = run_cli("-m", "clamp.predict", f"ckpt={ckpt}", f"input={tmp_path / 'in'}", f"output={out}", too_long)
    assert result.returncode == 2 and "error: names: Keypoint prompt word 'the tip of the left ear'" in result.stderr
    assert not list(out.glob("*.jpg"))
