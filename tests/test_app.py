"""The web demo (`python -m clamp.app`): its prediction path against `clamp.predict`'s, and the page itself
in a real browser (Debian's Chromium driven by playwright): it loads offline, an uploaded photo gets the
drawing and the keypoints `clamp.predict` writes, boxes typed or clicked, and one message for a file
that is not an image or is over the caps."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clamp
from clamp.app import EXAMPLE_PHOTOS, PhotoDemo, box_from_corners, parse_boxes
from clamp.errors import ClampError
from clamp.predict import predict
from clamp.predictor import Predictor
from tests.helpers import start_cli
from tests.test_predict import compose_predict

CHROMIUM = Path("/usr/bin/chromium")
PHOTO = Path(str(EXAMPLE_PHOTOS / "chelsea.jpg"))
#: The page's server is started with caps small enough for the test's files (the photo fits them).
MAX_UPLOAD_MB, MAX_IMAGE_PIXELS = 0.1, 200_000


@pytest.fixture(scope="module")
def ckpt(trained_run) -> Path:
    return trained_run / "checkpoints" / "last.ckpt"


def command_report(ckpt: Path, photo: Path, out: Path, boxes: list[list[float]] | None = None) -> dict:
    """``python -m clamp.predict``'s ``predictions.json`` for ``photo`` (in-process, as tests/test_predict.py)."""
    overrides = [f"ckpt={ckpt}", f"input={photo}", f"output={out}", "progress=none", "score_maps=true"]
    if boxes is not None:
        boxes_file = out.with_suffix(".boxes.json")
        boxes_file.write_text(json.dumps([{"file_name": photo.name, "bbox": box} for box in boxes]))
        overrides.append(f"boxes={boxes_file}")
    predict(compose_predict(*overrides))
    return json.loads((out / "predictions.json").read_text())


def assert_same_predictions(page: dict, command: dict) -> None:
    """The same report, keypoints within 1e-3 px (and scores within 1e-4)."""

    def without_keypoints(report: dict) -> dict:
        copy = json.loads(json.dumps(report))
        for image in copy["images"]:
            for animal in image["animals"]:
                animal.pop("keypoints")
        return copy

    assert without_keypoints(page) == without_keypoints(command)
    for page_image, image in zip(page["images"], command["images"]):
        for page_animal, animal in zip(page_image["animals"], image["animals"]):
            assert page_animal["keypoints"].keys() == animal["keypoints"].keys()
            for name, (x, y, score) in animal["keypoints"].items():
                assert page_animal["keypoints"][name] == pytest.approx([x, y, score], abs=1e-3), name


# ---- the prediction path, without a browser -------------------------------------------------------
def test_typed_boxes_are_x_y_w_h_separated_by_semicolons():
    assert parse_boxes("") is None and parse_boxes("  ") is None
    assert parse_boxes("40, 30, 300, 260") == [[40, 30, 300, 260]]
    assert parse_boxes("1 2 3 4; 5,6,7,8;") == [[1, 2, 3, 4], [5, 6, 7, 8]]
    for bad in ("1, 2, 3", "a, b, c, d", "1, 2, 3, nan"):
        with pytest.raises(ClampError, match="four numbers x, y, w, h"):
            parse_boxes(bad)


def test_two_clicked_corners_make_the_box_that_holds_both():
    assert box_from_corners((10, 20), (59, 99)) == [10, 20, 50, 80]
    assert box_from_corners((59, 99), (10, 20)) == [10, 20, 50, 80]


def test_the_page_writes_the_predictions_json_clamp_predict_writes(ckpt, tmp_path):
    demo = PhotoDemo(Predictor.from_checkpoint(ckpt, device="cpu"), tmp_path)
    for boxes in (None, [[40, 30, 300, 260], [0, 0, 200, 150]]):
        result = demo.predict(PHOTO, boxes, draw_names=False, score_maps=True)
        out = tmp_path / f"command-{len(boxes or [])}"
        assert_same_predictions(result.report, command_report(ckpt, PHOTO, out, boxes))
        assert json.loads((result.folder / "predictions.json").read_text()) == result.report
        assert result.drawing.read_bytes() == (out / "chelsea.jpg.pose.jpg").read_bytes()
        assert result.score_maps is not None and result.score_maps.is_file()
        assert len(result.keypoint_rows()) == len(result.entry["animals"]) * 17


def test_a_file_that_is_not_an_image_is_one_message_naming_it(ckpt, tmp_path):
    demo = PhotoDemo(Predictor.from_checkpoint(ckpt, device="cpu"), tmp_path)
    upload = tmp_path / "upload-1234"
    upload.mkdir()
    (upload / "notes.jpg").write_text("not a photo")
    with pytest.raises(ClampError, match=r"^cannot read image notes\.jpg: not an image file") as error:
        demo.predict(upload / "notes.jpg", None, draw_names=False, score_maps=True)
    assert "upload-1234" not in str(error.value)
    with pytest.raises(ClampError, match="lies outside the 451x300 image"):
        demo.predict(PHOTO, [[500, 0, 10, 10]], draw_names=False, score_maps=True)


def test_a_model_without_score_maps_says_why_on_the_page(tmp_path):
    model = clamp.create_model("simplebaseline_tiny_rn", input_size=64, heatmap_size=16)
    demo = PhotoDemo(Predictor(model, device="cpu"), tmp_path)
    assert "No score maps: score maps are CLAMP's; SimpleBaseline has none." in demo.model_note()
    result = demo.predict(PHOTO, None, draw_names=True, score_maps=True)
    assert result.score_maps is None and len(result.downloads) == 2


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch):
    from clamp.app import _import_gradio

    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(ClampError, match=r"pip install -e '\.\[app\]'"):
        _import_gradio()


# ---- the page in a browser ------------------------------------------------------------------------
def _browser_test_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        return "the web demo needs Gradio: pip install -e '.[app]'"
    if importlib.util.find_spec("playwright") is None:
        return "the browser test needs playwright: pip install -e '.[test]'"
    if not CHROMIUM.is_file():
        return f"no {CHROMIUM}: the browser test drives Debian's Chromium (scripts/install_chromium.sh)"
    return None


@pytest.fixture(scope="module", autouse=True)
def app_process(ckpt, tmp_path_factory):
    """``python -m clamp.app`` on a free port of 127.0.0.1 (small caps), started when the module starts so
    that it loads while the tests without a browser run; stopped with Ctrl-C unless a test did."""
    if _browser_test_missing():
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = start_cli(
        "-m",
        "clamp.app",
        f"ckpt={ckpt}",
        f"port={port}",
        f"max_upload_mb={MAX_UPLOAD_MB}",
        f"max_image_pixels={MAX_IMAGE_PIXELS}",
        f"hydra.run.dir={tmp_path_factory.mktemp('app-run')}",
    )
    state = {"url": f"http://127.0.0.1:{port}/", "process": process, "stopped": False}
    yield state
    if not state["stopped"]:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def server(app_process):
    """The running app's state (its URL, its process), once it answers."""
    missing = _browser_test_missing()
    if missing:
        pytest.skip(missing)
    process, deadline = app_process["process"], time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(app_process["url"], timeout=5).close()
            return app_process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                stdout, stderr = process.communicate(timeout=30)
                pytest.fail(f"the app did not start: {stdout}{stderr}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def browser_page(server):
    """One Chromium page on the app, loaded once; requests for anything but the app are refused and kept."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900}, accept_downloads=True)

        def only_the_app(route):
            if route.request.url.startswith(server["url"]):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_app)
        page.goto(server["url"])
        page.wait_for_selector("#photo input[type=file]", state="attached")
        page.outside_requests = outside
        yield page
        browser.close()


def upload(page, path: Path) -> None:
    """Put ``path`` into the page's photo field (clearing the one before)."""
    if page.locator("#photo input[type=file]").count() == 0:
        page.locator("#photo button[aria-label='Clear']").click()
    page.set_input_files("#photo input[type=file]", str(path))


def downloaded_predictions(page) -> dict:
    with page.expect_download() as download:
        page.locator("#downloads a[download='predictions.json']").click()
    return json.loads(Path(download.value.path()).read_text())


def wait_for_new_result(page, before: str | None) -> None:
    """Wait until the downloads list holds a predictions.json other than ``before``'s (its href)."""
    link = "#downloads a[download='predictions.json']"
    page.wait_for_function(
        "([link, before]) => { const a = document.querySelector(link); return a && a.href !== before; }",
        arg=[link, before],
        timeout=60_000,
    )


def result_link(page) -> str | None:
    link = page.locator("#downloads a[download='predictions.json']")
    return link.get_attribute("href") if link.count() else None


def toasts(page) -> str:
    page.wait_for_selector(".toast-body", timeout=30_000)
    return "\n".join(page.locator(".toast-body").all_inner_texts())


def test_the_page_loads_with_nothing_from_outside(browser_page):
    assert browser_page.title() == "CLAMP: animal keypoints"
    assert "This is a demo model" in browser_page.inner_text("body")
    assert browser_page.outside_requests == []


def test_the_page_serves_no_other_file_of_the_machine(browser_page, server, ckpt):
    for path in (ckpt, Path(__file__).resolve()):
        assert browser_page.request.get(f"{server['url']}gradio_api/file={path}").status == 403, path


def test_an_uploaded_photo_is_drawn_with_the_keypoints_clamp_predict_writes(browser_page, ckpt, tmp_path):
    page = browser_page
    upload(page, PHOTO)
    wait_for_new_result(page, None)
    command = command_report(ckpt, PHOTO, tmp_path / "command")
    assert_same_predictions(downloaded_predictions(page), command)
    drawing = page.locator("#drawing img").get_attribute("src")
    assert page.request.get(drawing).body() == (tmp_path / "command" / "chelsea.jpg.pose.jpg").read_bytes()
    assert page.get_attribute("#keypoints [role=grid]", "aria-rowcount") == "18"  # a header and 17 keypoints
    assert "chelsea.jpg (451x300): 1 animal(s)" in page.inner_text("#message")


def test_a_typed_box_and_two_clicked_corners_give_clamp_predicts_keypoints_in_that_box(browser_page, ckpt, tmp_path):
    page = browser_page
    before = result_link(page)
    page.fill("#boxes textarea", "40, 30, 300, 260")
    page.press("#boxes textarea", "Enter")
    wait_for_new_result(page, before)
    command = command_report(ckpt, PHOTO, tmp_path / "typed", [[40, 30, 300, 260]])
    assert_same_predictions(downloaded_predictions(page), command)

    # The drawing is shown at its own size (451x300 fits the column): a click at (x, y) is pixel (x, y).
    drawing = page.locator("#drawing img")
    assert drawing.bounding_box()["width"] == pytest.approx(451, abs=1)
    before = result_link(page)
    drawing.click(position={"x": 100, "y": 50})
    page.wait_for_function("() => document.querySelector('#message').innerText.includes('opposite corner')")
    drawing.click(position={"x": 20, "y": 250})
    wait_for_new_result(page, before)
    # The pixel under the mouse, to a pixel: the element's edges lie between the screen's pixels.
    clicked = parse_boxes(page.input_value("#boxes textarea"))
    assert clicked is not None and clicked[0] == pytest.approx([20, 50, 81, 201], abs=1)
    assert downloaded_predictions(page)["images"][0]["animals"][0]["box"] == clicked[0]


def test_a_non_image_or_an_upload_over_the_caps_gets_a_message_not_a_traceback(browser_page, tmp_path):
    page = browser_page
    (tmp_path / "notes.jpg").write_text("not a photo")
    upload(page, tmp_path / "notes.jpg")
    assert "cannot read image notes.jpg: not an image file" in toasts(page)
    too_many_bytes = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(too_many_bytes)
    assert too_many_bytes.stat().st_size > MAX_UPLOAD_MB * 2**20
    upload(page, too_many_bytes)
    page.wait_for_function("() => document.body.innerText.includes('exceed the maximum allowed size')")
    too_many_pixels = tmp_path / "flat.png"
    Image.new("RGB", (500, 500), (90, 120, 40)).save(too_many_pixels)
    upload(page, too_many_pixels)
    page.wait_for_function("() => document.body.innerText.includes('decompression-bomb cap')")
    assert "Traceback" not in page.inner_text("body")


def test_the_command_prints_one_line_and_stops_on_ctrl_c(server):
    process = server["process"]
    process.send_signal(signal.SIGINT)
    server["stopped"] = True
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == [f"CLAMP web demo on {server['url']} (Ctrl-C stops it)"]
    assert stderr.strip() == "", stderr
