"""Export a trained checkpoint in a shareable form: ``python -m clamp.export ckpt=PATH out=DIR|model.onnx``.

The format follows ``out`` (``format=auto``): an ``*.onnx`` name is an ONNX file, anything else a
safetensors folder; ``format=hub`` is asked for by name; a ``format=`` that contradicts the name is
refused before anything is read.

``format=safetensors`` writes ``DIR/model.safetensors`` (the weights; safetensors holds tensors only,
so loading it cannot run code) and ``DIR/clamp_model.json`` (the rebuild recipe, keypoint spec,
preprocessing and provenance). ``clamp.Predictor.from_pretrained(DIR)`` loads it: this is the form a
model-zoo entry should take.

``format=hub out=DIR`` writes the same two files and ``DIR/README.md``, a Hugging Face Hub model card
(:mod:`clamp.model_hub`: licence ``license=``, tags, dataset, the metrics of the run's own
``metrics.json``, training command, split manifest hashes, keypoints; ``repo=ORG/NAME`` puts the
repository's name in its examples). ``hf upload ORG/NAME DIR`` publishes it, and
``clamp.Predictor.from_pretrained("hf-hub:ORG/NAME")`` loads it.

``format=onnx out=model.onnx`` writes the image branch as one ONNX file (CLAMP's text-side prompt
embeddings computed once and stored in the graph; dynamic batch size; keypoint spec, preprocessing
and provenance in its metadata; see :mod:`clamp.onnx_export`). ``python -m clamp.predict
ckpt=model.onnx`` (``backend=onnx``) and ``clamp.Predictor.from_onnx`` run it with onnxruntime.
Needs ``pip install 'clamp-pose[onnx]'``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from clamp.cli import hydra_entry_point
from clamp.errors import ClampError, did_you_mean

EXPORT_FORMATS = ("auto", "safetensors", "hub", "onnx")
#: The formats that write a folder (model.safetensors + clamp_model.json, and the card for hub).
FOLDER_FORMATS = ("safetensors", "hub")


def export_format(format: str, out: Path) -> str:
    """The format to write: ``format``, or for ``auto`` the one ``out`` names (``*.onnx``: onnx, else
    safetensors); a folder format (safetensors, hub) for an ``*.onnx`` name is refused."""
    if format not in EXPORT_FORMATS:
        raise ClampError(
            f"format={format!r}{did_you_mean(str(format), EXPORT_FORMATS)}: choose one of {list(EXPORT_FORMATS)}"
        )
    onnx_name = out.suffix.lower() == ".onnx"
    if format == "auto":
        return "onnx" if onnx_name else "safetensors"
    if format in FOLDER_FORMATS and onnx_name:
        raise ClampError(
            f"format={format} writes a folder, but out={out} is named as an ONNX file; drop format= to "
            "export ONNX there, or name a folder (out=exported/)"
        )
    return format


def export(cfg: DictConfig) -> Path:
    from clamp.checkpoint import checkpoint_record, load_model, read_checkpoint
    from clamp.predictor import write_export

    fmt = export_format(str(cfg.format), Path(cfg.out))
    if fmt in FOLDER_FORMATS and Path(cfg.out).is_file():
        raise ClampError(f"out={cfg.out} is a file; a {fmt} export is a folder (out=exported/)")
    if fmt == "hub":
        from clamp.model_hub import check_license, parse_hub_id

        license = check_license(cfg.license)
        repo_id = None if cfg.repo is None else parse_hub_id(f"hf-hub:{cfg.repo}").repo_id
    checkpoint = read_checkpoint(cfg.ckpt)
    record = checkpoint_record(checkpoint, cfg.ckpt)
    model = load_model(checkpoint)
    if fmt == "onnx":
        return _export_onnx(cfg, model, record)
    out = write_export(Path(cfg.out), model, record)
    if fmt == "hub":
        return _write_card(cfg, out, model, record, license, repo_id)
    print(f"exported {cfg.ckpt} -> {out} (load with clamp.Predictor.from_pretrained({str(out)!r}))")
    return out


def _write_card(cfg: DictConfig, out: Path, model, record, license: str | None, repo_id: str | None) -> Path:
    from clamp.model_hub import HUB_PREFIX, MODEL_CARD, model_card, run_facts

    run = run_facts(Path(cfg.ckpt), model.state_dict())
    (out / MODEL_CARD).write_text(model_card(record, run, license=license, repo_id=repo_id))
    repo = repo_id or "ORG/NAME"
    print(f"exported {cfg.ckpt} -> {out} with a model card ({out / MODEL_CARD})")
    if run.metrics_note:
        print(f"  no metrics in the card: {run.metrics_note}")
    if run.command is None:
        print("  no training command in the card: the run folder has no .hydra/overrides.yaml")
    if license is None:
        print("  no licence in the card (license=ID sets it): the weights' terms depend on their data and CLIP weights")
    print(f"  upload: hf upload {repo} {out}   load: clamp.Predictor.from_pretrained('{HUB_PREFIX}{repo}')")
    return out


def _export_onnx(cfg: DictConfig, model, record) -> Path:
    from clamp.onnx_export import export_onnx

    out = Path(cfg.out)
    if out.is_dir():
        out = out / "model.onnx"
    elif out.suffix.lower() != ".onnx":
        raise ClampError(f"out={cfg.out}: an ONNX export is one file; name it *.onnx (e.g. out=model.onnx)")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export_onnx(model.cpu(), out, provenance=record["provenance"])
    except ImportError as err:
        raise ClampError(str(err)) from None
    size = out.stat().st_size / 2**20
    print(
        f"exported {cfg.ckpt} -> {out} ({size:.1f} MiB; run with `python -m clamp.predict ckpt={out} input=...` "
        f"or clamp.Predictor.from_onnx({str(out)!r}))"
    )
    return out


main = hydra_entry_point("export", export)

if __name__ == "__main__":
    main()
