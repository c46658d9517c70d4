"""Train under @hydra.main, as lightning-hydra-template's src/train.py does (cut down).

`python src/train.py init=xavier`, `-m init=kaiming_conv,none`, `experiment=example`,
`-m hparams_search=init_optuna`. Returns the optimized metric (for sweepers).
"""

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `src.` imports, as rootutils does


def log_hyperparameters(cfg: DictConfig, model: L.LightningModule, trainer: L.Trainer) -> None:
    """The template's utils.log_hyperparameters, plus the `init` node and the preset's name."""
    hparams: dict[str, Any] = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "trainer": OmegaConf.to_container(cfg.trainer, resolve=True),
        "init": OmegaConf.to_container(cfg.init, resolve=True),
        "model/params/total": sum(p.numel() for p in model.parameters()),
        "task_name": cfg.get("task_name"), "tags": cfg.get("tags"), "seed": cfg.get("seed"),
    }
    if HydraConfig.initialized():  # which file of the `init` group was composed (init=<preset>)
        hparams["init_preset"] = HydraConfig.get().runtime.choices.get("init")
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Build data, model (its net initialized by hydra_init) and trainer; fit; return the metrics."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    if cfg.get("init_in_python"):
        import hydra_init

        model: L.LightningModule = hydra_init.instantiate(cfg.model, init=cfg.init)
    else:
        model = hydra.utils.instantiate(cfg.model)  # YAML-only: net is a hydra_init.initialized node
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False)
    log_hyperparameters(cfg, model, trainer)
    if cfg.get("train"):
        trainer.fit(model=model, datamodule=datamodule)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        trainer.test(model=model, datamodule=datamodule)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
