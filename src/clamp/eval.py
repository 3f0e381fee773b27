"""Evaluate a checkpoint on its dataset's test split: ``python -m clamp.eval ckpt=PATH``.

The model is rebuilt from the checkpoint's own record, and the dataset, split and preprocessing
from its stored data settings; ``data.<key>=...`` overrides what was stored (e.g.
``data.root=/datasets/ap-10k`` on another machine, ``data.splits.test.ann=annotations/ap10k-test-split1.json``).
Prints the OKS metrics and writes ``metrics.json``, ``results.json`` and the split manifest of what
was scored to the run folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clamp.cli import hydra_entry_point, quiet_other_ranks, report_metrics

log = logging.getLogger("clamp.eval")


def _merge(stored: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with every non-null value of ``overrides`` (nested dicts merged key by key)."""
    merged = dict(stored)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif value is not None and _sets_something(value):
            merged[key] = value
    return merged


def _sets_something(value: Any) -> bool:
    """Whether an override holds a non-null value anywhere (``data.splits`` of nulls sets nothing)."""
    if isinstance(value, dict):
        return any(_sets_something(v) for v in value.values())
    return value is not None


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    import lightning as L

    from clamp.checkpoint import CheckpointError, read_checkpoint
    from clamp.keypoints import get_keypoint_spec
    from clamp.lightning.checkpointing import AtomicCheckpointIO
    from clamp.lightning.datamodule import PoseDataModule, check_dataset_files
    from clamp.lightning.module import PoseEstimationModule

    ckpt = Path(cfg.ckpt)
    checkpoint = read_checkpoint(ckpt)
    module = PoseEstimationModule.from_checkpoint(checkpoint, str(ckpt))
    stored = checkpoint.get("datamodule_hyper_parameters")
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"{ckpt} does not record the data it was trained on; evaluate it with "
            "clamp.evaluation.oks on a results file instead"
        )
    data_cfg = _merge(stored, OmegaConf.to_container(cfg.data, resolve=True))
    spec = get_keypoint_spec(data_cfg["keypoints"])
    if spec.to_dict() != module.keypoint_spec.to_dict():
        raise CheckpointError(
            f"{ckpt} predicts the '{module.keypoint_spec.name}' keypoints "
            f"({module.keypoint_spec.num_keypoints}), but data.keypoints is '{spec.name}' "
            f"({spec.num_keypoints}); evaluate it on a dataset of its own keypoints"
        )
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    module.hparams.evaluation.update(
        OmegaConf.to_container(cfg.evaluation, resolve=True), results_json=cfg.results_json
    )
    data_cfg["manifest_path"] = str(output_dir / "split_manifest.json")
    # Evaluation reads: the synthetic settings a demo checkpoint recorded only say how to write its data.
    synthetic = data_cfg.pop("generate", None)
    if "datasets" in data_cfg:  # trained with data=multi: every dataset of the union, each scored alone
        from clamp.lightning.multi import MultiPoseDataModule, member_settings

        members = member_settings(data_cfg["datasets"], data_cfg.get("root"), synthetic)
        data_cfg.update(root=None, datasets={name: {**m, "generate": None} for name, m in members.items()})
        datamodule: Any = MultiPoseDataModule(**data_cfg)
        scored = " + ".join(str(m.annotation_path("test")) for m in datamodule.members.values())
        datamodule.check_files()
    else:
        datamodule = PoseDataModule(**data_cfg)
        scored = str(datamodule.annotation_path("test"))
        check_dataset_files(spec.name, datamodule.root, datamodule.hparams.splits, synthetic=synthetic)
    trainer = L.Trainer(
        logger=False,
        default_root_dir=str(output_dir),
        enable_checkpointing=False,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,
        **OmegaConf.to_container(cfg.trainer, resolve=True),
    )
    quiet_other_ranks(trainer)
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = module.last_evaluation
    if trainer.is_global_zero:
        report_metrics(metrics, output_dir / "metrics.json", f"{ckpt} on {scored}")
    return metrics


main = hydra_entry_point("eval", evaluate)

if __name__ == "__main__":
    main()
