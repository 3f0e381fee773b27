"""Export a trained checkpoint in a shareable form: ``python -m clamp.export ckpt=PATH out=DIR``.

``format=safetensors`` writes ``DIR/model.safetensors`` (the weights; safetensors holds tensors only,
so loading it cannot run code) and ``DIR/clamp_model.json`` (the rebuild recipe, keypoint spec,
preprocessing and provenance). ``clamp.Predictor.from_pretrained(DIR)`` loads it: this is the form a
model-zoo entry should take.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from clamp.cli import hydra_entry_point
from clamp.errors import ClampError, did_you_mean

EXPORT_FORMATS = ("safetensors",)


def export(cfg: DictConfig) -> Path:
    from clamp.checkpoint import checkpoint_record, load_model, read_checkpoint
    from clamp.predictor import write_export

    if cfg.format not in EXPORT_FORMATS:
        raise ClampError(f"format={cfg.format!r}{did_you_mean(str(cfg.format), EXPORT_FORMATS)}: choose one of "
                         f"{list(EXPORT_FORMATS)}")
    checkpoint = read_checkpoint(cfg.ckpt)
    record = checkpoint_record(checkpoint, cfg.ckpt)
    model = load_model(checkpoint)
    out = write_export(Path(cfg.out), model, record)
    print(f"exported {cfg.ckpt} -> {out} (load with clamp.Predictor.from_pretrained({str(out)!r}))")
    return out


main = hydra_entry_point("export", export)

if __name__ == "__main__":
    main()
