"""A web page to try a model on photos: ``python -m clamp.app ckpt=PATH`` (Gradio: ``pip install -e '.[app]'``).

Upload a photo (or pick the bundled CC0 one), optionally give boxes ``x, y, w, h`` (the convention of
``clamp.predict``'s ``boxes=``; several separated by ``;``) or click two opposite corners on the
drawing, and the page shows the keypoints drawn, their names and scores, CLAMP's score maps, and
offers ``predictions.json`` and the drawings for download.

Each photo goes through :class:`clamp.predict.PredictionRun`, the code of ``python -m clamp.predict``:
the same Predictor, checks, drawings, file names and ``predictions.json`` (:func:`clamp.predict.prediction_report`),
so the page's numbers are the command's. The page binds to 127.0.0.1 unless ``host=`` says otherwise,
refuses uploads over ``max_upload_mb`` and images over ``max_image_pixels`` (the command's cap), and
says in one message what is wrong with a file that is not an image. Nothing reaches the internet:
Gradio's analytics and share links are off and its fonts are its own files.
"""

# No `from __future__ import annotations` here: Gradio reads the event handlers' annotations
# (gr.SelectData) as objects.
import contextlib
import html
import io
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clamp.cli import hydra_entry_point
from clamp.errors import ClampError

log = logging.getLogger("clamp.app")

#: The bundled CC0 photos offered as examples (their licence: ``app_photos/README.md``).
EXAMPLE_PHOTOS = files("clamp") / "app_photos"
#: Libraries that would log every request on the console.
_QUIET_LOGGERS = ("httpx", "httpcore", "gradio", "asyncio", "uvicorn", "uvicorn.access")
#: Seconds a photo's result folder is kept (Gradio serves its own copies; it clears them after an hour).
KEEP_RESULTS_S = 600
BOX_HELP = (
    "x, y, w, h in pixels (as clamp.predict's boxes=), several separated by ';'; empty: the whole photo; "
    "or click two opposite corners on the drawing"
)


def parse_boxes(text: str | None) -> list[list[float]] | None:
    """Boxes typed as ``x, y, w, h`` (``;`` between boxes); None for an empty text (the whole photo)."""
    if text is None or not text.strip():
        return None
    boxes = []
    for part in text.split(";"):
        if not part.strip():
            continue
        try:
            values = [float(v) for v in part.replace(",", " ").split()]
        except ValueError:
            raise ClampError(f"box '{part.strip()}': write four numbers x, y, w, h") from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ClampError(f"box '{part.strip()}': write four numbers x, y, w, h")
        boxes.append(values)
    return boxes or None


def box_from_corners(first: tuple[float, float], second: tuple[float, float]) -> list[float]:
    """The box ``[x, y, w, h]`` with two opposite corners (clicked pixels, both inside the box)."""
    x1, x2 = sorted((first[0], second[0]))
    y1, y2 = sorted((first[1], second[1]))
    return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def format_boxes(boxes: list[list[float]]) -> str:
    return "; ".join(", ".join(f"{v:g}" for v in box) for box in boxes)


@dataclass(frozen=True)
class PhotoResult:
    """One photo's results: ``report`` is ``predictions.json``'s content, the files lie in ``folder``."""

    report: dict[str, Any]
    folder: Path

    @property
    def entry(self) -> dict[str, Any]:
        return self.report["images"][0]

    @property
    def drawing(self) -> Path:
        return self.folder / self.entry["drawing"]

    @property
    def score_maps(self) -> Path | None:
        return self.folder / self.entry["score_maps"] if "score_maps" in self.entry else None

    @property
    def downloads(self) -> list[Path]:
        return [self.folder / "predictions.json", self.drawing, *([self.score_maps] if self.score_maps else [])]

    def keypoint_rows(self) -> list[list[Any]]:
        """``[animal, keypoint, x, y, score]`` per keypoint of every animal."""
        return [
            [number, name, x, y, score]
            for number, animal in enumerate(self.entry["animals"], 1)
            for name, (x, y, score) in animal["keypoints"].items()
        ]

    def summary(self) -> str:
        entry = self.entry
        animals = entry["animals"]
        scores = ", ".join(f"{a['score']:.3f}" for a in animals)
        return (
            f"{entry['file_name']} ({entry['width']}x{entry['height']}): {len(animals)} animal(s)"
            + (f", instance score {scores}" if animals else "")
            + (f"; {entry['note']}" if "note" in entry else "")
        )


class PhotoDemo:
    """Predicts one uploaded photo at a time the way ``python -m clamp.predict`` does, into ``workdir``."""

    def __init__(self, predictor: Any, workdir: Path, draw_threshold: float = 0.2) -> None:
        self.predictor = predictor
        self.workdir = workdir
        self.draw_threshold = draw_threshold

    def predict(
        self, photo: str | os.PathLike, boxes: list[list[float]] | None, draw_names: bool, score_maps: bool
    ) -> PhotoResult:
        """``photo``'s keypoints in boxes ``[x, y, w, h]`` (None: the photo is one animal); a
        :class:`ClampError` says what is wrong with the file or a box, naming the file, not its upload path."""
        from clamp.predict import BoxTable, OutputNames, PredictionRun, Progress, prediction_report, write_predictions

        photo = Path(photo)
        started = time.perf_counter()
        self._remove_old_results()
        folder = Path(tempfile.mkdtemp(prefix="photo-", dir=self.workdir))
        options = OmegaConf.create(
            {
                "draw_names": bool(draw_names),
                "draw_threshold": self.draw_threshold,
                "score_maps": bool(score_maps) and self.predictor.has_score_maps,
                "names": None,
            }
        )
        table = BoxTable(None if boxes is None else {photo.name: boxes}, photo.parent)
        with Progress("none", 1) as progress:
            run = PredictionRun(options, self.predictor, OutputNames(folder, [photo]), table, photo.parent, progress)
            run.run_images([photo])
        if run.skipped:
            # The reasons name the upload's temporary path; the person knows the file by its name.
            raise ClampError(run.skipped[0]["reason"].replace(str(photo), photo.name))
        report = prediction_report(self.predictor, run, table)
        write_predictions(folder, report)
        result = PhotoResult(report, folder)
        log.debug("%s [%.2f s]", result.summary(), time.perf_counter() - started)
        return result

    def _remove_old_results(self) -> None:
        """Gradio has copied a result's files to its own cache by the time it is shown: ours can go."""
        for folder in self.workdir.iterdir():
            if time.time() - folder.stat().st_mtime > KEEP_RESULTS_S:
                shutil.rmtree(folder, ignore_errors=True)

    def model_note(self) -> str:
        """What the page says about the model (and why it has no score maps, if so)."""
        model = self.predictor.describe()
        lines = [f"Model: {model['name']} ({model['keypoints']} keypoints, {model['backend']})."]
        if self.predictor.demo_reason:
            lines.append(
                f"This is a demo model ({self.predictor.demo_reason}): it cannot find keypoints on real photos."
            )
        if not self.predictor.has_score_maps:
            lines.append(f"No score maps: {self.predictor._no_score_maps()}.")
        return " ".join(lines)


def _import_gradio() -> Any:
    # Before Gradio is imported: no usage statistics, no version check against PyPI.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError:
        raise ClampError("the web demo needs Gradio: pip install -e '.[app]'") from None
    return gradio


def build_page(demo: PhotoDemo, draw_names: bool = False, score_maps: bool = True) -> Any:
    """The Gradio page (a ``gradio.Blocks``) around ``demo``."""
    gr = _import_gradio()
    has_maps = demo.predictor.has_score_maps
    examples = sorted(str(p) for p in EXAMPLE_PHOTOS.iterdir() if p.name.endswith((".jpg", ".png")))

    def user_error(error: ClampError) -> Exception:
        return gr.Error(html.escape(str(error)), title="Cannot predict", print_exception=False)

    def show(result: PhotoResult) -> tuple:
        return (
            str(result.drawing),
            str(result.score_maps) if result.score_maps else None,
            result.keypoint_rows(),
            [str(p) for p in result.downloads],
            html.escape(result.summary()),
        )

    def run(photo: str | None, boxes_text: str, names: bool, maps: bool) -> tuple:
        if photo is None:
            return None, None, [], None, "Upload a photo."
        try:
            return show(demo.predict(photo, parse_boxes(boxes_text), names, maps))
        except ClampError as error:
            raise user_error(error) from None

    def new_photo(photo: str | None, names: bool, maps: bool) -> tuple:
        return ("", None, *run(photo, "", names, maps))

    def corner(photo: str | None, first: list[float] | None, names: bool, maps: bool, event: gr.SelectData) -> tuple:
        point = (float(event.index[0]), float(event.index[1]))
        if first is None:
            message = f"First corner at ({point[0]:g}, {point[1]:g}): click the opposite corner."
            return (gr.skip(), list(point), gr.skip(), gr.skip(), gr.skip(), gr.skip(), message)
        boxes_text = format_boxes([box_from_corners((first[0], first[1]), point)])
        return (boxes_text, None, *run(photo, boxes_text, names, maps))

    with gr.Blocks(title="CLAMP: animal keypoints", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("## CLAMP: animal keypoints on your photo\n" + html.escape(demo.model_note()))
        first_corner = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                photo = gr.File(label="Photo", file_types=["image"], type="filepath", elem_id="photo")
                gr.Examples([[p] for p in examples], inputs=[photo], label="Bundled CC0 photo")
                boxes = gr.Textbox(label="Boxes", placeholder="e.g. 40, 30, 300, 260", info=BOX_HELP, elem_id="boxes")
                names = gr.Checkbox(draw_names, label="Keypoint names on the drawing")
                maps = gr.Checkbox(
                    score_maps and has_maps,
                    label="Score maps",
                    interactive=has_maps,
                    info=None if has_maps else demo.predictor._no_score_maps(),
                )
                button = gr.Button("Predict", variant="primary")
            with gr.Column(scale=3):
                message = gr.Markdown(elem_id="message")
                # No labels on the pictures: they would cover the banner a demo model's pictures carry.
                # Without Gradio's "share" button, which uploads to Hugging Face.
                pictures = {
                    "show_label": False,
                    "type": "filepath",
                    "interactive": False,
                    "buttons": ["download", "fullscreen"],
                }
                drawing = gr.Image(label="Keypoints", elem_id="drawing", **pictures)
                table = gr.Dataframe(
                    headers=["animal", "keypoint", "x", "y", "score"],
                    datatype=["number", "str", "number", "number", "number"],
                    interactive=False,
                    label="Keypoints (image pixels)",
                    max_height=320,
                    elem_id="keypoints",
                )
                score_map_image = gr.Image(label="Score maps", visible=has_maps, elem_id="score-maps", **pictures)
                downloads = gr.File(label="predictions.json and drawings", file_count="multiple", elem_id="downloads")
        results = [drawing, score_map_image, table, downloads, message]
        options = {"concurrency_id": "predict", "concurrency_limit": 1}
        photo.change(new_photo, [photo, names, maps], [boxes, first_corner, *results], **options)
        for trigger in (boxes.submit, button.click, names.input, maps.input):
            trigger(lambda *a: (None, *run(*a)), [photo, boxes, names, maps], [first_corner, *results], **options)
        drawing.select(corner, [photo, first_corner, names, maps], [boxes, first_corner, *results], **options)
    return page


def serve(cfg: DictConfig) -> None:
    """Load the model, serve the page until Ctrl-C (or SIGTERM), print its address."""
    from clamp.predict import load_predictor

    _import_gradio()  # a missing Gradio is said before the model loads
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # What is wrong with a photo is said on the page, not on the server's console.
    logging.getLogger("clamp.predict").setLevel(logging.ERROR)
    if float(cfg.max_upload_mb) <= 0:
        raise ClampError(f"max_upload_mb={cfg.max_upload_mb} must be positive")
    predictor = load_predictor(cfg)
    with tempfile.TemporaryDirectory(prefix="clamp-app-") as workdir:
        demo = PhotoDemo(predictor, Path(workdir), float(cfg.draw_threshold))
        page = build_page(demo, bool(cfg.draw_names), bool(cfg.score_maps))
        try:
            _, url, _ = page.launch(
                server_name=str(cfg.host),
                server_port=int(cfg.port),
                share=False,
                quiet=True,
                prevent_thread_lock=True,
                max_file_size=int(float(cfg.max_upload_mb) * 2**20),
                footer_links=[],
                ssr_mode=False,
                mcp_server=False,
                pwa=False,
                enable_monitoring=False,
                run_history=False,
            )
        except OSError:  # Gradio's message names its own settings, not this command's
            raise ClampError(
                f"cannot serve on {cfg.host}:{cfg.port}: the port is taken or {cfg.host} is not an address of "
                "this machine (choose another port= or host=)"
            ) from None
        print(f"CLAMP web demo on {url} (Ctrl-C stops it)", flush=True)
        # Ctrl-C, and SIGTERM alike, stop the server, also where SIGINT was ignored when Python started
        # (a background job of a script).
        for stop in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop, signal.default_int_handler)
        try:
            while page.is_running:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            with contextlib.redirect_stdout(io.StringIO()):  # Gradio's "Closing server" line
                page.close()


main = hydra_entry_point("app", serve)

if __name__ == "__main__":
    main()
