"""The trial config: the flat keys users write in YAML, validated before any work starts.

Every name a user can type (dataset, model, optimizer, sampler, schedules) is checked
here against the registries, so a typo fails in one line that names the field, the bad
value and the allowed values, instead of deep inside a Ray worker.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from harness.errors import ConfigError, did_you_mean, is_number

LR_SCHEDULES = ("constant", "step", "cosine", "decreasing")
STEP_RULES = ("v1", "v2")
DEVICES = ("auto", "cpu", "cuda")
IMPORTANCE_PROXIES = ("loss", "gradnorm")
SPECTRA = ("cond", "spread")
# What a config that leaves them out gets: bare `sambench train` is a SAM run of a few
# seconds on digits. Committed specs name these settings explicitly.
DEFAULT_EPOCHS = 5
DEFAULT_LR = 0.1


@dataclass(frozen=True)
class TrialConfig:
    """One trial. Field names are the YAML keys; defaults give a quick digits/MLP/SAM run.

    The trailing comments are the keys' documentation: ``harness.config_doc`` turns them,
    with the defaults and the registries, into ``sambench train --help`` and
    docs/configuration.md.
    """

    # workload
    dataset: str = "digits"           # the data set (or synthetic problem)
    model: str = "mlp"                # the network (linear for synthetic problems)
    width: int | None = None          # model width (hidden units, channels or WRN widen factor)
    depth: int | None = None          # model depth (MLP layers or WRN depth)
    data_root: str | None = None      # torchvision datasets: folder holding the files
    download: bool = False            # torchvision datasets: allow downloading into data_root
    fake_data: bool = False           # torchvision datasets: FakeData of the same shape (smoke runs)
    augment: bool | None = None       # null: crop+flip for CIFAR, nothing elsewhere
    train_subset: int | None = None   # keep only the first N training examples
    test_subset: int | None = None    # keep only the first N test examples
    # synthetic problems (leastsq, ridge, logreg)
    n_samples: int = 100              # synthetic problems: rows of A
    dim: int = 100                    # synthetic problems: columns of A
    cond: float = 10.0                # synthetic problems: condition number of A
    reg: float = 0.0                  # synthetic problems: L2 regularisation
    consistent: bool = True           # leastsq: b in the range of A (f* = 0)
    spectrum: str = "cond"            # "spread": A has eigenvalues 1, cond, rest in [1, 2] (unequal L_i)
    problem_seed: int = 0             # the problem data and x0; the trial seed drives sampling only
    # optimizer
    optimizer: str = "sam"            # sgd, sam (lam 1), usam (lam 0) or unified (any lam)
    lam: float | str | None = None    # float in [0, 1], "1/t" or "1-1/t"; fixed by sam/usam
    rho: float | None = None          # perturbation radius; 0 for sgd
    lr: float | None = None           # base step size; 0.1 unless a step_rule computes it
    lr_schedule: str = "constant"     # multiplier of lr over training
    step_rule: str | None = None      # "v1"/"v2": lr and rho from the problem's constants
    momentum: float = 0.0             # heavy-ball momentum of the base SGD
    weight_decay: float = 0.0         # L2 penalty added to the gradient
    bn_policy: str = "clean"          # batch-norm statistics: from the clean pass only, or both
    # sampling
    sampler: str = "reshuffle"        # how mini-batches are drawn
    batch_size: int = 128             # examples per step
    paper_compat: bool = False        # the reference code's sampler: no reweighting, with replacement
    importance_proxy: str = "loss"    # neural nets: per-sample loss or gradient-norm bound
    importance_mix: float = 0.1       # p = (1 - mix) * proxy + mix * uniform
    importance_refresh: int = 1       # epochs between proxy refreshes
    # length and measurement
    epochs: int | None = None         # passes over the data; 5 when iterations is not set either
    iterations: int | None = None     # optimizer steps, instead of epochs
    eval_every: int | None = None     # epochs, or iterations for synthetic problems (default n)
    sharpness_every: int = 0          # evaluations between lam_max measurements; 0 = never
    sharpness_samples: int = 512      # training examples in the fixed lam_max subset
    sharpness_method: str = "lanczos" # lam_max estimator
    sharpness_trace: bool = False     # also a Hutchinson trace estimate
    seed: int = 0                     # model init, sampling and augmentation
    device: str = "auto"              # auto: cuda when available, else cpu

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "TrialConfig":
        """Build and validate a config from user keys; ``sharpness: {every, samples, method,
        trace}`` is accepted as sugar for the flat ``sharpness_*`` keys."""
        flat = dict(raw)
        nested = flat.pop("sharpness", None)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise ConfigError("sharpness", nested, "a mapping with keys every, samples, method, trace")
            for key, value in nested.items():
                if key not in ("every", "samples", "method", "trace"):
                    raise ConfigError(f"sharpness.{key}", value, "keys every, samples, method, trace")
                flat[f"sharpness_{key}"] = value
        known = [f.name for f in fields(cls)]
        for key in flat:
            if key not in known:
                raise ConfigError(key, flat[key], "a trial config key" + did_you_mean(key, known)
                                  + "; `sambench train --help` lists them all")
        return cls(**flat).validated()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return dataclasses.replace(self, **changes)

    # -- derived facts ------------------------------------------------------------------
    @property
    def is_synthetic(self) -> bool:
        from harness.data import SYNTHETIC

        return self.dataset in SYNTHETIC

    # -- validation ---------------------------------------------------------------------
    def validated(self) -> "TrialConfig":
        """Check every field, fill the optimizer-implied values, and return the result."""
        from harness.data import DATASETS, SYNTHETIC, TORCHVISION
        from harness.models import MODELS
        from harness.optim import BN_POLICIES, OPTIMIZERS
        from harness.samplers import SAMPLERS
        from harness.sharpness import SHARPNESS_METHODS

        _one_of("dataset", self.dataset, DATASETS)
        _one_of("model", self.model, MODELS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("device", self.device, DEVICES)
        _one_of("bn_policy", self.bn_policy, BN_POLICIES)
        _one_of("sharpness_method", self.sharpness_method, SHARPNESS_METHODS)
        _one_of("importance_proxy", self.importance_proxy, IMPORTANCE_PROXIES)
        _one_of("spectrum", self.spectrum, SPECTRA)
        if self.step_rule is not None:
            _one_of("step_rule", self.step_rule, STEP_RULES)

        for name in ("download", "fake_data", "consistent", "paper_compat", "sharpness_trace"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "true or false")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ConfigError("data_root", self.data_root, "a folder path or null")
        if self.augment is not None and not isinstance(self.augment, bool):
            raise ConfigError("augment", self.augment, "true, false or null")
        for name in ("batch_size", "n_samples", "dim", "importance_refresh", "sharpness_samples"):
            _positive_int(name, getattr(self, name))
        for name in ("width", "depth", "train_subset", "test_subset", "epochs", "iterations", "eval_every"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        _int_at_least("seed", self.seed, 0)
        _int_at_least("problem_seed", self.problem_seed, 0)
        _int_at_least("sharpness_every", self.sharpness_every, 0)
        for name in ("momentum", "weight_decay", "reg"):
            _number_at_least(name, getattr(self, name), 0.0)
        _number_at_least("cond", self.cond, 1.0)
        _number_in("importance_mix", self.importance_mix, 0.0, 1.0)
        if self.momentum >= 1.0:
            raise ConfigError("momentum", self.momentum, "a number in [0, 1)")

        changes: dict[str, Any] = {}
        if self.epochs is not None and self.iterations is not None:
            raise ConfigError("epochs", self.epochs, "exactly one of epochs or iterations")
        if self.epochs is None and self.iterations is None:
            changes["epochs"] = DEFAULT_EPOCHS

        synthetic = self.dataset in SYNTHETIC
        if synthetic and self.model != "linear":
            raise ConfigError("model", self.model, f"linear (dataset {self.dataset} is a synthetic problem)")
        if not synthetic and self.step_rule is not None:
            raise ConfigError("step_rule", self.step_rule, f"null (theory step sizes need a synthetic problem: {', '.join(SYNTHETIC)})")
        if self.lr_schedule == "decreasing" and self.step_rule is None:
            raise ConfigError("lr_schedule", self.lr_schedule, "constant, step or cosine without a step_rule")
        if synthetic and self.lr_schedule in ("step", "cosine"):
            raise ConfigError("lr_schedule", self.lr_schedule, "constant or decreasing for a synthetic problem")
        if synthetic and self.batch_size > self.n_samples:
            raise ConfigError("batch_size", self.batch_size, f"at most n_samples = {self.n_samples}")
        if self.dataset in TORCHVISION and not self.fake_data and self.data_root is None:
            raise ConfigError("data_root", None, f"a folder holding the {self.dataset} files (or fake_data: true)")
        if self.data_root is not None and not self.download and not self.fake_data and self.dataset in TORCHVISION:
            if not os.path.isdir(self.data_root):
                raise ConfigError("data_root", self.data_root, "an existing folder (or download: true)")

        changes |= _resolve_optimizer(self)
        if self.step_rule is None and self.lr is None and "lr" not in changes:
            changes["lr"] = DEFAULT_LR
        if self.step_rule is None:
            lr = changes.get("lr", self.lr)
            if lr is None or not is_number(lr) or lr <= 0:
                raise ConfigError("lr", lr, "a positive number (or a step_rule for synthetic problems)")
        elif self.lr is not None or (self.optimizer != "sgd" and self.rho is not None):
            raise ConfigError("step_rule", self.step_rule, "null when lr/rho are given (a step_rule computes both)")
        if self.eval_every is None:
            changes["eval_every"] = self.n_samples if synthetic else 1
        return dataclasses.replace(self, **changes)


def _resolve_optimizer(cfg: TrialConfig) -> dict[str, Any]:
    """Fill lam/rho as the optimizer name implies (sgd: rho 0, no lam; sam: lam 1; usam: lam 0)."""
    from harness.optim import LAM_SCHEDULES, OPTIMIZERS

    fixed = OPTIMIZERS[cfg.optimizer]  # e.g. {"rho": 0.0, "lam": None} for sgd
    changes: dict[str, Any] = {}
    if cfg.optimizer == "sgd":
        if cfg.rho not in (None, 0, 0.0):
            raise ConfigError("rho", cfg.rho, "null or 0 for optimizer sgd")
        if cfg.lam is not None:
            raise ConfigError("lam", cfg.lam, "null for optimizer sgd")
        return {"rho": 0.0, "lam": None}
    if "lam" in fixed and fixed["lam"] is not None:
        if cfg.lam is not None and cfg.lam != fixed["lam"]:
            raise ConfigError("lam", cfg.lam, f"null or {fixed['lam']} for optimizer {cfg.optimizer}")
        changes["lam"] = float(fixed["lam"])
    else:
        lam = cfg.lam
        if lam is None:
            raise ConfigError("lam", lam, "a number in [0, 1], '1/t' or '1-1/t' for optimizer unified")
        if isinstance(lam, str):
            if lam not in LAM_SCHEDULES:
                raise ConfigError("lam", lam, "a number in [0, 1], '1/t' or '1-1/t'")
        else:
            _number_in("lam", lam, 0.0, 1.0)
            changes["lam"] = float(lam)
    if cfg.step_rule is None:
        if cfg.rho is None or not is_number(cfg.rho) or cfg.rho < 0:
            raise ConfigError("rho", cfg.rho, f"a number >= 0 for optimizer {cfg.optimizer}")
        changes["rho"] = float(cfg.rho)
    elif isinstance(changes.get("lam", cfg.lam), str):
        raise ConfigError("lam", cfg.lam, "a number in [0, 1] with a step_rule (the theory needs a fixed lam)")
    return changes


def _one_of(field: str, value: Any, allowed: Mapping[str, Any] | tuple[str, ...]) -> None:
    names = tuple(allowed)
    if value not in names:
        raise ConfigError(field, value, ", ".join(names))


def _positive_int(field: str, value: Any) -> None:
    _int_at_least(field, value, 1)


def _int_at_least(field: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(field, value, f"an integer >= {low}")


def _number_at_least(field: str, value: Any, low: float) -> None:
    if not is_number(value) or value < low:
        raise ConfigError(field, value, f"a number >= {low:g}")


def _number_in(field: str, value: Any, low: float, high: float) -> None:
    if not is_number(value) or not low <= value <= high:
        raise ConfigError(field, value, f"a number in [{low:g}, {high:g}]")
