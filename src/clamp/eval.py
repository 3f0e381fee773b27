"""Evaluate a checkpoint on its dataset's test split: ``python -m clamp.eval ckpt=PATH``.

The model, keypoint spec, dataset and split are read from the checkpoint; ``data.<key>=...``
overrides what was stored (e.g. ``data.root=/datasets/ap-10k`` on another machine).
Prints the OKS metrics and writes ``metrics.json`` to the run folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from clamp.cli import CONFIG_PATH, run_entry_point
from clamp.train import report_metrics

log = logging.getLogger("clamp.eval")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    import lightning as L

    from clamp.lightning.datamodule import PoseDataModule
    from clamp.lightning.module import PoseEstimationModule

    ckpt = Path(cfg.ckpt)
    stored = PoseEstimationModule.read_checkpoint(ckpt)
    module = PoseEstimationModule.from_checkpoint(stored)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    module.hparams.evaluation.update(OmegaConf.to_container(cfg.evaluation, resolve=True),
                                     results_json=cfg.results_json)
    data_cfg = {**stored["datamodule_hyper_parameters"], **OmegaConf.to_container(cfg.data, resolve=True)}
    data_cfg["manifest_path"] = str(output_dir / "split_manifest.json")
    datamodule = PoseDataModule(**data_cfg)
    datamodule.check_files(("train", "test"))
    trainer = L.Trainer(logger=False, default_root_dir=str(output_dir), enable_checkpointing=False,
                        **OmegaConf.to_container(cfg.trainer, resolve=True))
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = module.last_evaluation
    report_metrics(metrics, output_dir / "metrics.json", f"{ckpt} on {datamodule.annotation_path('test')}")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    run_entry_point(evaluate, cfg)


if __name__ == "__main__":
    main()
