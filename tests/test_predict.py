"""Prediction on users' own pictures: the library's Predictor, `python -m clamp.predict` on images, folders
and videos, boxes files, robustness, drawings, and the ONNX path (export, then onnxruntime)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import clamp
from clamp.cli import CONFIG_PATH
from clamp.errors import ClampError
from clamp.keypoints import AP10K
from clamp.predict import BoxesFileError, predict, read_boxes
from clamp.predictor import Predictor
from tests.helpers import run_cli

FRAMES, FPS, FRAME_SIZE = 10, 10.0, (96, 64)


# ---- helpers ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(trained_run) -> Path:
    return trained_run / "checkpoints" / "last.ckpt"


def compose_predict(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        return compose(config_name="predict", overrides=list(overrides))


def run_predict(ckpt: Path, source: Path, out: Path, *overrides: str) -> dict:
    """``predict`` in-process, as the CLI runs it after parsing, on a small batch and without a bar."""
    report = predict(compose_predict(f"ckpt={ckpt}", f"input={source}", f"output={out}", "progress=none", *overrides))
    assert json.loads((out / "predictions.json").read_text()) == json.loads(json.dumps(report))
    return report


def noise_image(path: Path, width: int = 80, height: int = 60, seed: int = 0, mode: str = "RGB") -> Path:
    array = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).convert(mode).save(path)
    return path


def count_forwards(monkeypatch) -> list[int]:
    """Patch Predictor._forward to record the batch size of each forward pass."""
    calls: list[int] = []
    original = Predictor._forward

    def counting(self, crops, score_maps):
        calls.append(len(crops))
        return original(self, crops, score_maps)

    monkeypatch.setattr(Predictor, "_forward", counting)
    return calls


def write_video(path: Path, frames: int = FRAMES) -> Path:
    """A square moving right, written with plain cv2 (not the code under test)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, FRAME_SIZE)
    assert writer.isOpened()
    for i in range(frames):
        bgr = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 40, np.uint8)
        cv2.rectangle(bgr, (4 + 6 * i, 20), (20 + 6 * i, 40), (0, 0, 255), -1)
        writer.write(bgr)
    writer.release()
    return path


# ---- the library -----------------------------------------------------------------------------
def test_the_library_predicts_named_keypoints_per_box_without_importing_lightning_or_hydra(ckpt):
    code = (
        "import sys, numpy as np, clamp\n"
        f"p = clamp.Predictor.from_checkpoint({str(ckpt)!r}, device='cpu', flip_test=True)\n"
        "animals = p.predict(np.zeros((50, 70, 3), np.uint8), boxes=[[0, 0, 30, 20], [10, 5, 50, 40]])\n"
        "assert [a.keypoints.shape for a in animals] == [(17, 3), (17, 3)]\n"
        "assert list(animals[0].named()) == list(p.keypoint_spec.keypoint_names)\n"
        "assert animals[1].box == (10.0, 5.0, 50.0, 40.0) and isinstance(p.model, __import__('torch').nn.Module)\n"
        "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'hydra', 'omegaconf') if m in sys.modules))\n"
    )
    result = run_cli("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_crops_of_several_images_share_one_forward_pass(visible_ckpt, monkeypatch):
    predictor = Predictor.from_checkpoint(visible_ckpt, device="cpu", batch_size=4)
    images = [np.random.default_rng(i).integers(0, 255, (40 + 10 * i, 60, 3), dtype=np.uint8) for i in range(3)]
    one_by_one = [predictor.predict(image)[0] for image in images]
    calls = count_forwards(monkeypatch)
    batched = predictor.predict_many(images, [None, [[0, 0, 30, 30], [5, 5, 40, 30]], None])
    assert calls == [4], "4 crops of 3 images in one forward pass (mirrors included in it)"
    assert [len(animals) for animals in batched] == [1, 2, 1]
    for single, animals in zip([one_by_one[0], one_by_one[2]], [batched[0], batched[2]]):
        np.testing.assert_allclose(animals[0].keypoints, single.keypoints, atol=1e-3)
    calls.clear()
    predictor.predict_many(images * 3)  # 9 crops, batches of 4
    assert calls == [4, 4, 1]


def test_the_predict_command_batches_crops_across_images(ckpt, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        noise_image(photos / f"{i}.png", seed=i)
    calls = count_forwards(monkeypatch)
    report = run_predict(ckpt, photos, tmp_path / "out", "batch_size=3", "device=cpu")
    assert len(report["images"]) == 5
    assert calls == [3, 2], "images are batched together, not one forward per image"


def test_score_maps_come_with_the_crop_they_cover_and_draw_one_grid_per_animal(visible_ckpt):
    predictor = Predictor.from_checkpoint(visible_ckpt, device="cpu")
    assert predictor.has_score_maps
    image = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    animals = predictor.predict(image, boxes=[[0, 0, 60, 60], [50, 20, 70, 70]], score_maps=True)
    grid = predictor.model.grid_size
    for animal in animals:
        assert animal.score_maps.shape == (17, grid[1], grid[0]) and animal.crop.shape == (64, 64, 3)
        assert np.abs(animal.score_maps).max() <= 1.0 + 1e-5  # raw cosine similarities
    assert not np.array_equal(animals[0].crop, animals[1].crop)
    # Score maps do not change the keypoints.
    plain = predictor.predict(image, boxes=[[0, 0, 60, 60], [50, 20, 70, 70]])
    for a, b in zip(plain, animals):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert a.score_maps is None and a.crop is None
    one = predictor.draw_score_maps(animals[:1])
    two = predictor.draw_score_maps(animals)
    assert one.ndim == 3 and two.shape[0] > 1.8 * one.shape[0] - 40 and two.shape[1] == one.shape[1]
    with pytest.raises(ClampError, match="score_maps=True"):
        predictor.draw_score_maps(plain)


def test_boxes_reaching_past_the_image_are_clipped_as_the_evaluation_clips_them_and_keypoints_stay_inside(
    visible_ckpt, tmp_path, monkeypatch
):
    from clamp.codec import HeatmapCodec
    from clamp.data.coco import load_coco_keypoints
    from clamp.data.dataset import TopDownDataset
    from clamp.data.transforms import TopDownTransform

    # The case: a 300-px image, a box 150 px past its bottom; one past its left, one inside.
    image = noise_image(tmp_path / "000000000001.png", 300, 300)
    boxes = [[50.0, 250.0, 200.0, 200.0], [-120.0, 40.0, 200.0, 150.0], [30.0, 20.0, 100.0, 80.0]]
    keypoints = [[60.0, 260.0, 2.0] * 17, [10.0, 50.0, 2.0] * 17, [40.0, 30.0, 2.0] * 17]
    annotations = [
        {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": box, "keypoints": kp, "iscrowd": 0}
        for i, (box, kp) in enumerate(zip(boxes, keypoints))
    ]
    coco = tmp_path / "annotations.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": image.name, "width": 300, "height": 300}],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "cat", "keypoints": list(AP10K.keypoint_names)}],
            }
        )
    )
    # The evaluation's crops of these boxes, by the dataset code (mmpose's clipping, then centre/scale).
    evaluation = TopDownDataset(
        load_coco_keypoints(coco, AP10K, image_root=tmp_path),
        TopDownTransform(AP10K, (64, 64), training=False),
        HeatmapCodec((64, 64), (16, 16)),
        center_jitter_prob=0.0,
    )
    expected = torch.stack([evaluation[i]["image"] for i in range(len(boxes))])
    predictor = Predictor.from_checkpoint(visible_ckpt, device="cpu", flip_test=False)
    crops: list[torch.Tensor] = []
    original = Predictor._forward

    def keeping_crops(self, batch, score_maps):
        crops.append(batch)
        return original(self, batch, score_maps)

    monkeypatch.setattr(Predictor, "_forward", keeping_crops)
    animals = predictor.predict(image, boxes=boxes) + predictor.predict(image)
    torch.testing.assert_close(crops[0], expected, rtol=0, atol=0)
    for animal in animals:
        assert animal.keypoints[:, :2].min() >= 0 and animal.keypoints[:, :2].max() <= 299, animal.box
    assert [animal.box for animal in animals] == [tuple(box) for box in boxes] + [(0.0, 0.0, 300.0, 300.0)]


def test_a_model_without_score_maps_says_so():
    predictor = Predictor(clamp.create_model("simplebaseline_tiny_rn", input_size=64, heatmap_size=16), device="cpu")
    assert not predictor.has_score_maps
    with pytest.raises(ClampError, match="SimpleBaseline has none"):
        predictor.predict(np.zeros((32, 32, 3), np.uint8), score_maps=True)


def test_a_demo_models_drawings_carry_the_banner_and_a_real_ones_do_not(ckpt):
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    assert "synthetic" in predictor.demo_caption and "random CLIP weights" in predictor.demo_caption
    image = np.full((120, 160, 3), 200, np.uint8)
    animals = predictor.predict(image)
    drawing = predictor.draw(image, animals, score_threshold=1.0)  # no keypoint drawn: only the banner
    assert drawing.shape == image.shape
    assert drawing[:4].mean() < 100 and np.array_equal(drawing[40:], image[40:])
    real = Predictor(predictor.model, provenance={"pretrained": "openai", "synthetic_data": False}, device="cpu")
    assert real.demo_reason is None and np.array_equal(real.draw(image, animals, score_threshold=1.0), image)


# ---- the command on images -------------------------------------------------------------------
def exif_rotated_jpeg(path: Path, width: int, height: int) -> Path:
    """A JPEG stored ``width`` x ``height`` whose EXIF orientation 6 says: show it rotated 90 degrees."""
    exif = Image.Exif()
    exif[0x0112] = 6
    noise_image(path.with_suffix(".tmp.png"), width, height)
    Image.open(path.with_suffix(".tmp.png")).save(path, exif=exif.tobytes())
    path.with_suffix(".tmp.png").unlink()
    return path


def test_images_of_any_mode_and_size_get_their_results(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "grey.png", mode="L")
    noise_image(photos / "rgba.png", mode="RGBA")
    noise_image(photos / "palette.png", mode="P")
    noise_image(photos / "cmyk.jpg", mode="CMYK")
    Image.fromarray(np.random.default_rng(1).integers(0, 65535, (50, 70), dtype=np.uint16)).save(photos / "deep.png")
    assert Image.open(photos / "deep.png").mode.startswith("I")
    exif_rotated_jpeg(photos / "rotated.jpg", 80, 50)
    noise_image(photos / "tiny.png", 3, 2)
    noise_image(photos / "wide.jpg", 1600, 200)
    report = run_predict(ckpt, photos, tmp_path / "out", "device=cpu")
    assert report["skipped"] == []
    sizes = {image["file_name"]: (image["width"], image["height"]) for image in report["images"]}
    assert sizes == {
        "cmyk.jpg": (80, 60),
        "deep.png": (70, 50),
        "grey.png": (80, 60),
        "palette.png": (80, 60),
        "rgba.png": (80, 60),
        "rotated.jpg": (50, 80),
        "tiny.png": (3, 2),
        "wide.jpg": (1600, 200),
    }
    for image in report["images"]:
        keypoints = np.array(list(image["animals"][0]["keypoints"].values()))
        assert keypoints.shape == (17, 3) and np.isfinite(keypoints).all()
        assert keypoints[:, :2].min() >= 0, image["file_name"]
        assert (keypoints[:, :2].max(axis=0) <= [image["width"] - 1, image["height"] - 1]).all(), image["file_name"]
        drawing = cv2.imread(str(tmp_path / "out" / image["drawing"]))
        assert drawing.shape[:2] == (image["height"], image["width"]), image["file_name"]


def test_an_image_too_small_to_frame_is_skipped_by_name_with_the_reason(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "dot.png", 1, 1)
    noise_image(photos / "line.png", 40, 1)
    noise_image(photos / "cat.png", 2, 2)
    report = run_predict(ckpt, photos, tmp_path / "out", "device=cpu")
    reasons = {entry["file_name"]: entry["reason"] for entry in report["skipped"]}
    assert reasons == {
        "dot.png": "the image is 1x1 pixels: too small to predict on (keypoints need at least 2x2 pixels)",
        "line.png": "the image is 40x1 pixels: too small to predict on (keypoints need at least 2x2 pixels)",
    }
    [cat] = report["images"]
    assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y, _ in cat["animals"][0]["keypoints"].values())
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(ClampError, match="1x1 pixels: too small"):
        predictor.predict(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ClampError, match="keeps less than 2 pixels of width or height inside the 100x80 image"):
        predictor.predict(np.zeros((80, 100, 3), np.uint8), boxes=[[99.5, 10, 20, 20]])


def transparent_png(path: Path, mode: str) -> Path:
    """A PNG with varying alpha (or a palette with a transparent entry) over noise colours."""
    rgba = np.random.default_rng(3).integers(0, 255, (60, 80, 4), dtype=np.uint8)
    if mode == "P":
        palette = Image.fromarray(rgba[..., :3]).convert("P")
        palette.save(path, transparency=palette.getpixel((0, 0)))  # a colour the picture uses
    else:
        Image.fromarray(rgba, "RGBA").convert(mode).save(path)
    return path


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_images_keep_their_stored_colours_as_cv2_reads_them(tmp_path, mode):
    from clamp.files import read_image_rgb

    path = transparent_png(tmp_path / f"{mode}.png", mode)
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read_image_rgb(path), expected)


def test_a_transparent_picture_gets_the_keypoints_of_its_colours_without_alpha(visible_ckpt, tmp_path):
    rgba = transparent_png(tmp_path / "rgba.png", "RGBA")
    rgb = tmp_path / "rgb.png"
    Image.open(rgba).convert("RGB").save(rgb)
    predictor = Predictor.from_checkpoint(visible_ckpt, device="cpu")
    [with_alpha], [without] = predictor.predict(rgba), predictor.predict(rgb)
    np.testing.assert_array_equal(with_alpha.keypoints, without.keypoints)


def test_an_animated_gif_is_its_first_frame_with_a_note_alone_or_in_a_folder(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    frames = [Image.fromarray(np.full((60, 80, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(photos / "walk.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(photos / "still.gif")
    folder = run_predict(ckpt, photos, tmp_path / "folder", "device=cpu")
    alone = run_predict(ckpt, photos / "walk.gif", tmp_path / "alone", "device=cpu")
    assert folder["skipped"] == [] and [image["file_name"] for image in folder["images"]] == ["still.gif", "walk.gif"]
    walk = folder["images"][1]
    assert walk == alone["images"][0] and walk["note"] == "only the first of its 3 frames is predicted"
    assert "note" not in folder["images"][0]
    drawing = cv2.imread(str(tmp_path / "alone" / walk["drawing"]))
    assert walk["drawing"] == "walk.gif.pose.jpg" and drawing.shape == (60, 80, 3)


def test_bad_inputs_are_named_and_skipped_and_every_other_picture_gets_its_result(ckpt, fixtures_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "chelsea.jpg"):
        (photos / name).write_bytes((fixtures_dir / "photos" / name).read_bytes())
    jpeg = (fixtures_dir / "photos" / "chelsea.jpg").read_bytes()
    (photos / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (photos / "fake.png").write_text("this is not a picture")
    (photos / "notes.txt").write_text("field notes")
    (photos / "clip.mp4").write_text("not a video either")
    out = tmp_path / "out"
    result = run_cli(
        "-m", "clamp.predict", f"ckpt={ckpt}", f"input={photos}", f"output={out}", f"hydra.run.dir={out}", "device=cpu"
    )
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    assert "Traceback" not in console
    for name in ("broken.jpg", "fake.png", "clip.mp4"):
        assert f"skipped {name}" in console
    report = json.loads((out / "predictions.json").read_text())
    assert [image["file_name"] for image in report["images"]] == ["chelsea.jpg", "chelsea.png"]
    reasons = {entry["file_name"]: entry["reason"] for entry in report["skipped"]}
    assert sorted(reasons) == ["broken.jpg", "clip.mp4", "fake.png", "notes.txt"]
    assert "truncated" in reasons["broken.jpg"] and "not an image" in reasons["fake.png"]
    assert "as a video" in reasons["clip.mp4"] and "not an image or video file" in reasons["notes.txt"]
    assert report["model"]["demo"] is True and "note: this is a demo model" in result.stdout
    drawings = [out / image["drawing"] for image in report["images"]]
    assert len(set(drawings)) == 2 and all(p.is_file() for p in drawings)
    assert not (out / "clip.mp4.pose.mp4").exists(), "a failed video leaves no partial output"


def test_outputs_never_overwrite_each_other_or_an_input(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["a.jpg", "a.png", "a b.png", "a_b.png", "A.png", "x.png"]
    for seed, name in enumerate(names):
        noise_image(photos / name, seed=seed)
    inputs = {p.name: p.read_bytes() for p in photos.iterdir()}
    report = run_predict(ckpt, photos, photos, "device=cpu")  # the drawings go beside the photos
    drawings = [image["drawing"] for image in report["images"]]
    assert sorted(image["file_name"] for image in report["images"]) == sorted(names)
    assert len({d.casefold() for d in drawings}) == len(names), "two pictures share a drawing"
    assert {p.name: p.read_bytes() for p in photos.iterdir() if p.name in inputs} == inputs, "an input was replaced"
    drawing_of = {image["file_name"]: image["drawing"] for image in report["images"]}
    assert drawing_of["a.jpg"] == "a.jpg.pose.jpg" and drawing_of["a.png"].casefold().startswith("a.png")
    # A rerun into the same folder does not take the first run's drawings for photos.
    again = run_predict(ckpt, photos, photos, "device=cpu")
    assert sorted(image["drawing"] for image in again["images"]) == sorted(drawings)


def test_the_readme_names_the_outputs_predict_writes():
    import re

    from clamp.predict import OUTPUT_SUFFIXES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own animals: predict", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`<name>([^`]*)`", section))
    assert named == {".<ext>" + suffix for suffix in OUTPUT_SUFFIXES}  # a.jpg -> a.jpg.pose.jpg (test above)


def test_progress_is_a_line_every_n_pictures_off_a_terminal(ckpt, tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        noise_image(photos / f"{i}.png", seed=i)
    with caplog.at_level("INFO", logger="clamp.predict"):
        predict(
            compose_predict(
                f"ckpt={ckpt}",
                f"input={photos}",
                f"output={tmp_path / 'out'}",
                "progress=lines",
                "progress_every=2",
                "device=cpu",
            )
        )
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("images:")] == [
        "images: 2/3",
        "images: 3/3",
    ]
    with pytest.raises(ClampError, match="did you mean lines"):
        predict(compose_predict(f"ckpt={ckpt}", f"input={photos}", f"output={tmp_path / 'o2'}", "progress=line"))


def test_drawing_options_reach_the_drawings_and_score_maps_are_written(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "cat.png", 160, 120)

    def drawing(*overrides: str) -> np.ndarray:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        report = run_predict(ckpt, photos, out, "device=cpu", *overrides)
        return cv2.imread(str(out / report["images"][0]["drawing"])).astype(int), report, out

    banner_only, report, _ = drawing("draw_threshold=1.0")
    assert "score_maps" not in report["images"][0]
    points, _, _ = drawing("draw_threshold=0.0")
    named, report, out = drawing("draw_threshold=0.0", "draw_names=true", "score_maps=true")
    assert np.abs(points - banner_only).mean() > 1 and np.abs(named - points).mean() > 0.2
    grid = cv2.imread(str(out / report["images"][0]["score_maps"]))
    assert report["images"][0]["score_maps"] == "cat.png.scores.jpg" and grid.shape[0] > 200


# ---- boxes files -----------------------------------------------------------------------------
BAD_BOXES = [
    ("an image", None, "is an image, not a JSON file"),
    ("not json", b"{'file_name': 'a.jpg'", "is not valid JSON"),
    ("object", {"boxes": []}, "must be a COCO file with 'images' and 'annotations'"),
    ("record type", [[1, 2, 3, 4]], "record 0 is list, not an object"),
    ("no bbox", [{"file_name": "a.jpg"}], "record 0: field 'bbox' = None must be [x, y, w, h]"),
    (
        "short bbox",
        [{"file_name": "a.jpg", "bbox": [1, 2, 3, 4]}, {"file_name": "a.jpg", "bbox": [1, 2, 3]}],
        "record 1: field 'bbox' = [1, 2, 3]",
    ),
    ("text in bbox", [{"file_name": "a.jpg", "bbox": [0, "x", 5, 5]}], "record 0: field 'bbox' = 'x' is not a number"),
    (
        "negative box",
        [{"file_name": "a.jpg", "bbox": [10, 10, -5, 20]}],
        "record 0: field 'bbox' = [10, 10, -5, 20] has a non-positive width or height",
    ),
    ("nan", b'[{"file_name": "a.jpg", "bbox": [NaN, 0, 5, 5]}]', "record 0: field 'bbox' = nan is not a finite"),
    ("no image", [{"bbox": [0, 0, 5, 5]}], "record 0 needs 'file_name' or 'image_id'"),
    ("file name type", [{"file_name": 7, "bbox": [0, 0, 5, 5]}], "record 0: field 'file_name' = 7"),
    ("image id type", [{"image_id": [1], "bbox": [0, 0, 5, 5]}], "record 0: field 'image_id' = [1] must be an integer"),
    ("score", [{"image_id": 1, "bbox": [0, 0, 5, 5], "score": "high"}], "record 0: field 'score' = 'high'"),
    ("frame", [{"file_name": "v.mp4", "bbox": [0, 0, 5, 5], "frame": -1}], "record 0: field 'frame' = -1"),
    ("coco image", {"images": [{"id": 1}], "annotations": []}, "images[0] needs 'id' and a 'file_name'"),
    (
        "coco annotation",
        {"images": [], "annotations": [{"image_id": 1, "bbox": [0, 0, 0, 3]}]},
        "annotations[0]: field 'bbox' = [0, 0, 0, 3] has a non-positive",
    ),
]


@pytest.mark.parametrize(("content", "message"), [case[1:] for case in BAD_BOXES], ids=[c[0] for c in BAD_BOXES])
def test_an_invalid_boxes_file_gets_one_message_naming_file_record_and_field(tmp_path, content, message):
    path = tmp_path / "my_boxes.json"
    if content is None:
        noise_image(tmp_path / "photo.jpg")
        path = tmp_path / "photo.jpg"
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))
    with pytest.raises(ClampError) as caught:
        read_boxes(path)
    text = str(caught.value)
    assert str(path) in text and message in text and "\n" not in text
    if content is not None and not isinstance(caught.value, BoxesFileError):
        assert "JSON" in text


def test_a_jpeg_passed_as_boxes_stops_the_command_with_one_line(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "cat.jpg")
    result = run_cli(
        "-m",
        "clamp.predict",
        f"ckpt={tmp_path / 'never-read.ckpt'}",
        f"input={photos}",
        f"boxes={photos / 'cat.jpg'}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: ") and f"{photos / 'cat.jpg'} is an image" in lines[0]


def test_a_negative_box_stops_the_command_with_one_line(ckpt, tmp_path, capsys):
    from clamp.cli import run_entry_point

    noise_image(tmp_path / "cat.jpg")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps(
            [{"file_name": "cat.jpg", "bbox": [5, 5, 30, 20]}, {"file_name": "cat.jpg", "bbox": [5, 5, 30, -20]}]
        )
    )
    cfg = compose_predict(
        f"ckpt={ckpt}", f"input={tmp_path / 'cat.jpg'}", f"boxes={boxes}", f"output={tmp_path / 'out'}"
    )
    with pytest.raises(SystemExit) as exit_status:
        run_entry_point(predict, cfg)  # what the command runs after parsing its command line
    assert exit_status.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"error: {boxes}: record 1: field 'bbox' = [5, 5, 30, -20] has a non-positive width or "
        "height (boxes are [x, y, width, height])"
    ]


def test_detector_results_are_kept_above_the_score_threshold_and_matched_by_image_id(ckpt, tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["000000037516.jpg", "000000000004.jpg", "other.jpg"]):
        noise_image(photos / name, 120, 90, seed=i)
    detections = [
        {"image_id": 37516, "category_id": 1, "bbox": [10, 10, 50, 40], "score": 0.9},
        {"image_id": 37516, "category_id": 1, "bbox": [60, 30, 50, 50], "score": 0.8},
        {"image_id": 37516, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.1},
        {"image_id": 4, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.05},
        {"image_id": 99, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.95},
    ]
    boxes = tmp_path / "detections.json"
    boxes.write_text(json.dumps(detections))
    with caplog.at_level("WARNING", logger="clamp.predict"):
        report = run_predict(ckpt, photos, tmp_path / "out", f"boxes={boxes}", "box_score_threshold=0.3")
    animals = {image["file_name"]: image["animals"] for image in report["images"]}
    assert [a["box"] for a in animals["000000037516.jpg"]] == [[10, 10, 50, 40], [60, 30, 50, 50]]
    assert animals["000000000004.jpg"] == [], "every detection below the threshold: no animal"
    assert animals["other.jpg"] == [] and report["without_boxes"] == ["other.jpg"], "not in the file: no animal"
    assert any("match no input (e.g. #99)" in r.getMessage() for r in caplog.records)


def test_inputs_the_boxes_file_does_not_mention_have_no_animal_unless_missing_boxes_is_whole_image(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "seen.jpg", 120, 90)
    noise_image(photos / "unseen.jpg", 120, 90, seed=1)
    write_video(photos / "clip.mp4", frames=3)
    boxes = tmp_path / "detections.json"
    boxes.write_text(json.dumps([{"file_name": "seen.jpg", "bbox": [10, 10, 50, 40]}]))

    def run(*overrides: str) -> tuple[dict, dict, list[int]]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        report = run_predict(ckpt, photos, out, f"boxes={boxes}", "device=cpu", *overrides)
        animals = {image["file_name"]: [a["box"] for a in image["animals"]] for image in report["images"]}
        frames = json.loads((out / report["videos"][0]["results"]).read_text())["frames"]
        return report, animals, [len(f["animals"]) for f in frames]

    report, animals, per_frame = run()
    assert animals == {"seen.jpg": [[10, 10, 50, 40]], "unseen.jpg": []}, "nothing detected stays nothing"
    assert per_frame == [0, 0, 0] and report["without_boxes"] == ["clip.mp4", "unseen.jpg"]
    report, animals, per_frame = run("missing_boxes=whole_image")
    assert animals == {"seen.jpg": [[10, 10, 50, 40]], "unseen.jpg": [[0, 0, 120, 90]]}
    assert per_frame == [1, 1, 1] and report["without_boxes"] == ["clip.mp4", "unseen.jpg"]
    assert "without_boxes" not in run_predict(ckpt, photos / "seen.jpg", tmp_path / "plain", "device=cpu")
    with pytest.raises(ClampError, match="did you mean whole_image"):
        run("missing_boxes=whole")


# ---- videos ----------------------------------------------------------------------------------
def test_a_video_gives_a_drawn_video_and_per_frame_results_from_batched_frames(ckpt, tmp_path, monkeypatch):
    from clamp.video import VideoReader

    video = write_video(tmp_path / "clip.mp4")
    calls = count_forwards(monkeypatch)
    out = tmp_path / "out"
    report = run_predict(ckpt, video, out, "batch_size=4", "device=cpu")
    assert calls == [4, 4, 2], "10 frames in batches of 4"
    assert report["images"] == [] and len(report["videos"]) == 1
    entry = report["videos"][0]
    assert entry["frames"] == FRAMES and entry["drawing"] == "clip.mp4.pose.mp4"
    with VideoReader(out / entry["drawing"]) as drawn:
        assert drawn.fps == pytest.approx(FPS) and drawn.size == FRAME_SIZE
        first = next(iter(drawn)).image
        assert len(list(drawn)) == FRAMES
    assert first[:3].mean() < 30, "a demo model's frames carry the banner"
    results = json.loads((out / entry["results"]).read_text())
    assert [f["index"] for f in results["frames"]] == list(range(FRAMES))
    assert [f["timestamp"] for f in results["frames"]] == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-3)
    assert all(len(f["animals"]) == 1 and len(f["animals"][0]["keypoints"]) == 17 for f in results["frames"])
    assert results["model"]["demo"] is True


def test_per_frame_boxes_of_a_video_and_frames_without_entries_have_no_animal(ckpt, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "clip.mp4", frames=4)
    noise_image(folder / "still.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps(
            [
                {"file_name": "clip.mp4", "frame": 0, "bbox": [0, 0, 40, 40]},
                {"file_name": "clip.mp4", "frame": 0, "bbox": [40, 10, 50, 50]},
                {"file_name": "clip.mp4", "frame": 2, "bbox": [10, 10, 30, 30]},
            ]
        )
    )
    out = tmp_path / "out"
    report = run_predict(ckpt, folder, out, f"boxes={boxes}", "device=cpu")
    assert [image["file_name"] for image in report["images"]] == ["still.png"]
    frames = json.loads((out / report["videos"][0]["results"]).read_text())["frames"]
    assert [len(f["animals"]) for f in frames] == [2, 0, 1, 0]
    assert frames[2]["animals"][0]["box"] == [10, 10, 30, 30]


# ---- ONNX ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def visible_ckpt(ckpt, tmp_path_factory) -> Path:
    """A checkpoint of the trained tiny CLAMP with visible heatmaps.

    One epoch on synthetic data leaves near-flat heatmaps (argmax ties decide the keypoints);
    re-initialising the head and opening the context decoder's gate (as tests/test_onnx.py does)
    gives every keypoint a clear peak, so that comparing keypoints means something.
    """
    torch.manual_seed(0)
    model = clamp.load_model(ckpt)
    for module in model.keypoint_head.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.reset_parameters()
    with torch.no_grad():
        model.gamma.fill_(1.0)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {f"model.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("visible") / "visible.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def onnx_files(visible_ckpt, tmp_path_factory):
    """``visible_ckpt`` and its ONNX export by the command, the format read from the file name."""
    pytest.importorskip("onnxscript", reason="ONNX export needs onnxscript: pip install 'clamp-pose[onnx]'")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install 'clamp-pose[onnx]'")
    folder = tmp_path_factory.mktemp("onnx-e2e")
    onnx = folder / "model.onnx"
    result = run_cli(
        "-m",
        "clamp.export",
        f"ckpt={visible_ckpt}",
        f"out={onnx}",
        f"hydra.run.dir={folder / 'export'}",
        timeout=400,
    )
    assert result.returncode == 0, result.stderr
    assert "Replaced initializer" not in result.stdout + result.stderr, "exporter noise on the console"
    assert onnx.is_file() and onnx.read_bytes()[:1] == b"\x08", "an ONNX protobuf (ir_version first), not a folder"
    (folder / "probe").write_text("x")
    assert onnx.stat().st_mode & 0o777 == (folder / "probe").stat().st_mode & 0o777
    return visible_ckpt, onnx


def test_onnx_export_then_predict_with_onnxruntime_gives_the_pytorch_keypoints(onnx_files, tmp_path):
    visible, onnx = onnx_files
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "a.png", 120, 90, seed=1)
    noise_image(photos / "b.jpg", 64, 100, seed=2)
    boxes = tmp_path / "boxes.json"
    # b.jpg's box reaches past its right and bottom borders: both backends clip it, and the keypoints.
    boxes.write_text(
        json.dumps(
            [
                {"file_name": "a.png", "bbox": [0, 0, 60, 50]},
                {"file_name": "a.png", "bbox": [40, 20, 80, 70]},
                {"file_name": "b.jpg", "bbox": [30, 50, 60, 80]},
            ]
        )
    )
    result = run_cli(
        "-m",
        "clamp.predict",
        f"ckpt={onnx}",
        "backend=onnx",
        f"input={photos}",
        f"boxes={boxes}",
        f"output={tmp_path / 'onnx'}",
        f"hydra.run.dir={tmp_path / 'onnx'}",
    )
    assert result.returncode == 0, result.stderr
    from_onnx = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
    from_torch = run_predict(visible, photos, tmp_path / "torch", f"boxes={boxes}", "device=cpu")
    assert from_onnx["model"]["backend"] == "onnx" and from_torch["model"]["backend"] == "torch"
    assert from_onnx["model"]["demo"] is True, "the demo flag travels in the ONNX metadata"
    pairs = [
        (a, b) for i, j in zip(from_onnx["images"], from_torch["images"]) for a, b in zip(i["animals"], j["animals"])
    ]
    assert len(pairs) == 3
    b_keypoints = np.array(list(from_onnx["images"][1]["animals"][0]["keypoints"].values()))
    assert b_keypoints[:, :2].min() >= 0 and (b_keypoints[:, :2].max(axis=0) <= [63, 99]).all()
    for a, b in pairs:
        assert a["box"] == b["box"] and a["keypoints"].keys() == b["keypoints"].keys()
        ka, kb = np.array(list(a["keypoints"].values())), np.array(list(b["keypoints"].values()))
        assert np.abs(kb[:, 2]).max() > 0.05, "heatmaps must be visible for the comparison to mean something"
        np.testing.assert_allclose(ka[:, :2], kb[:, :2], atol=0.011)  # JSON rounds to 0.01 px
        np.testing.assert_allclose(ka[:, 2], kb[:, 2], atol=2e-4)


@pytest.mark.parametrize("batch", [1, 3])
def test_from_onnx_flip_tested_heatmaps_match_pytorch(onnx_files, batch):
    visible, onnx = onnx_files
    torch_predictor = Predictor.from_checkpoint(visible, device="cpu")
    onnx_predictor = Predictor.from_onnx(onnx, device="cpu")
    assert onnx_predictor.backend == "onnx" and onnx_predictor.keypoint_spec == AP10K
    assert onnx_predictor.demo_reason == torch_predictor.demo_reason is not None
    crops = torch.from_numpy(np.random.default_rng(batch).normal(size=(batch, 3, 64, 64)).astype(np.float32))
    expected = torch_predictor.heatmaps(crops).numpy()
    heatmaps = onnx_predictor.heatmaps(crops).numpy()
    assert heatmaps.shape == expected.shape == (batch, 17, 16, 16) and expected.std() > 0.01
    assert np.abs(heatmaps - expected).max() < 1e-4
    onnx_predictor.flip_test = torch_predictor.flip_test = False
    assert np.abs(onnx_predictor.heatmaps(crops).numpy() - torch_predictor.heatmaps(crops).numpy()).max() < 1e-4


def test_backend_and_file_mismatches_get_one_clear_message(onnx_files, ckpt, tmp_path):
    _, onnx = onnx_files
    noise_image(tmp_path / "cat.png")
    cases = [
        ([f"ckpt={ckpt}", "backend=onnx"], "backend=onnx runs an .onnx file"),
        ([f"ckpt={onnx}", "backend=torch"], "is an ONNX file: run it with backend=onnx"),
        ([f"ckpt={onnx}", "backend=onxx"], "did you mean onnx"),
        ([f"ckpt={onnx}", "score_maps=true"], "score maps need the PyTorch model"),
    ]
    for overrides, message in cases:
        with pytest.raises(ClampError, match=message):
            predict(compose_predict(*overrides, f"input={tmp_path / 'cat.png'}", f"output={tmp_path / 'out'}"))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(ClampError, match="cannot load .*garbage.onnx as an ONNX model"):
        Predictor.from_onnx(garbage)


def test_export_refuses_an_onnx_name_that_is_not_one(ckpt, tmp_path):
    from clamp.export import export

    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        cfg = compose(config_name="export", overrides=[f"ckpt={ckpt}", "format=onnx", f"out={tmp_path / 'm.txt'}"])
    with pytest.raises(ClampError, match=r"name it \*\.onnx"):
        export(cfg)
    assert not (tmp_path / "m.txt").exists()


def test_export_infers_the_format_from_the_name_and_refuses_one_that_contradicts_it(ckpt, tmp_path):
    from clamp.export import export_format

    assert export_format("auto", tmp_path / "model.onnx") == export_format("auto", tmp_path / "M.ONNX") == "onnx"
    assert export_format("auto", tmp_path / "zoo") == "safetensors"
    result = run_cli(
        "-m",
        "clamp.export",
        f"ckpt={ckpt}",
        "format=safetensors",
        f"out={tmp_path / 'model.onnx'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "format=safetensors writes a folder" in line and "model.onnx" in line
    assert not (tmp_path / "model.onnx").exists()


def test_the_onnx_runner_needs_only_onnxruntime_and_says_how_to_install_it(monkeypatch, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ClampError, match=r"pip install 'clamp-pose\[onnx\]'"):
        Predictor.from_onnx(tmp_path / "model.onnx")
