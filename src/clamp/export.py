"""Export a trained checkpoint in a shareable form: ``python -m clamp.export ckpt=PATH out=DIR|model.onnx``.

The format follows ``out`` (``format=auto``): an ``*.onnx`` name is an ONNX file, anything else a
safetensors folder; a ``format=`` that contradicts the name is refused before anything is read.

``format=safetensors`` writes ``DIR/model.safetensors`` (the weights; safetensors holds tensors only,
so loading it cannot run code) and ``DIR/clamp_model.json`` (the rebuild recipe, keypoint spec,
preprocessing and provenance). ``clamp.Predictor.from_pretrained(DIR)`` loads it: this is the form a
model-zoo entry should take.

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

EXPORT_FORMATS = ("auto", "safetensors", "onnx")


def export_format(format: str, out: Path) -> str:
    """The format to write: ``format``, or for ``auto`` the one ``out`` names (``*.onnx``: onnx, else
    safetensors); a format that contradicts the name is refused."""
    if format not in EXPORT_FORMATS:
        raise ClampError(
            f"format={format!r}{did_you_mean(str(format), EXPORT_FORMATS)}: choose one of {list(EXPORT_FORMATS)}"
        )
    onnx_name = out.suffix.lower() == ".onnx"
    if format == "auto":
        return "onnx" if onnx_name else "safetensors"
    if format == "safetensors" and onnx_name:
        raise ClampError(
            f"format=safetensors writes a folder, but out={out} is named as an ONNX file; drop format= to "
            "export ONNX there, or name a folder (out=exported/)"
        )
    return format


def export(cfg: DictConfig) -> Path:
    from clamp.checkpoint import checkpoint_record, load_model, read_checkpoint
    from clamp.predictor import write_export

    fmt = export_format(str(cfg.format), Path(cfg.out))
    if fmt == "safetensors" and Path(cfg.out).is_file():
        raise ClampError(f"out={cfg.out} is a file; a safetensors export is a folder (out=exported/)")
    checkpoint = read_checkpoint(cfg.ckpt)
    record = checkpoint_record(checkpoint, cfg.ckpt)
    model = load_model(checkpoint)
    if fmt == "onnx":
        return _export_onnx(cfg, model, record)
    out = write_export(Path(cfg.out), model, record)
    print(f"exported {cfg.ckpt} -> {out} (load with clamp.Predictor.from_pretrained({str(out)!r}))")
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
