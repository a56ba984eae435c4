"""Training: config dataclasses, the :class:`Trainer` (AMP, DDP, accumulation, exact resume),
checkpoints, seeding, metric logs and run folders (what may happen to an existing ``out_dir``)."""

from fgmm.train.checkpoint import atomic_copy, atomic_write, load_checkpoint, save_checkpoint
from fgmm.train.config import TrainConfig, config_from_dict, config_to_dict, load_config, save_config
from fgmm.train.distributed import DistContext, EpochSampler, setup_distributed
from fgmm.train.metrics_log import MetricsLogger
from fgmm.train.run_folder import RunPlan, check_same_setup, ensure_run_folder, open_run, plan_run
from fgmm.train.seed import epoch_generator, get_rng_state, seed_everything, set_rng_state
from fgmm.train.trainer import (
    OPTIMIZERS,
    SCHEDULERS,
    Trainer,
    TrainResult,
    create_optimizer,
    create_scheduler,
)

__all__ = [
    "OPTIMIZERS", "SCHEDULERS", "DistContext", "EpochSampler", "MetricsLogger", "RunPlan", "TrainConfig",
    "TrainResult", "Trainer", "atomic_copy", "atomic_write", "config_from_dict", "config_to_dict",
    "create_optimizer", "create_scheduler", "epoch_generator", "get_rng_state", "load_checkpoint",
    "load_config", "open_run", "plan_run", "check_same_setup", "ensure_run_folder", "save_checkpoint",
    "save_config", "seed_everything", "set_rng_state", "setup_distributed",
]
