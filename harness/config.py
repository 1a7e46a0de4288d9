"""The trial config: the flat keys users write in YAML, validated before any work starts.

Every name a user can type (dataset, model, optimizer, sampler, schedules) is checked
here against the registries, so a typo fails in one line that names the field, the bad
value and the allowed values, instead of deep inside a Ray worker.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

from harness.errors import ConfigError, did_you_mean, is_number

LR_SCHEDULES = ("constant", "step", "cosine", "decreasing")
DEVICES = ("auto", "cpu", "cuda")
IMPORTANCE_PROXIES = ("loss", "gradnorm")
IMPORTANCE_DEFAULTS = {"importance_proxy": "loss", "importance_mix": 0.1, "importance_refresh": 1}
# Keys added after results were first recorded. A trial's id hashes its identity(), which
# leaves such a key out while it holds its default: a spec recorded before the key existed
# keeps its trial ids, so resume, --extend and reruns still recognise its finished trials.
LATER_KEYS = ("val_fraction", "base_optimizer", "base_optimizer_args", "optimizer_args", "nesterov",
              "warmup_epochs", "label_smoothing", "grad_clip", "wd_skip_norm_bias", "precision",
              "channels_last", "compile", "tf32", "lam_schedule_unit")
SPECTRA = ("cond", "spread")
LAM_SCHEDULE_UNITS = ("step", "epoch")
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
    val_fraction: float = 0.0         # hold out this part of the training data (fixed seed); 0: no split
    # synthetic problems (leastsq, ridge, logreg)
    n_samples: int = 100              # synthetic problems: rows of A
    dim: int = 100                    # synthetic problems: columns of A
    cond: float = 10.0                # synthetic problems: condition number of A
    reg: float = 0.0                  # synthetic problems: L2 regularisation
    consistent: bool = True           # leastsq: b in the range of A (f* = 0)
    spectrum: str = "cond"            # "spread": A has eigenvalues 1, cond, rest in [1, 2] (unequal L_i)
    problem_seed: int = 0             # the problem data and x0; the trial seed drives sampling only
    # optimizer
    optimizer: str = "sam"            # a name of harness.optim.OPTIMIZERS or package.module:Class
    lam: float | str | None = None    # float in [0, 1], "1/t" or "1-1/t"; fixed by sam/usam, 1 for variants
    lam_schedule_unit: str = "step"   # what t counts in a lam schedule: optimizer steps (the paper's) or epochs
    rho: float | None = None          # perturbation radius; 0 for sgd, the method's default if unset
    lr: float | None = None           # base step size; 0.1 unless a step_rule computes it
    lr_schedule: str = "constant"     # multiplier of lr over training
    step_rule: str | None = None      # "v1"/"v2"/"v2_noiseless": lr and rho from the problem's constants
    momentum: float = 0.0             # heavy-ball momentum of the base SGD
    weight_decay: float = 0.0         # L2 penalty added to the gradient
    bn_policy: str = "clean"          # batch-norm statistics: from the clean pass only, or both
    base_optimizer: str = "sgd"       # sgd, adamw or package.module:Class: the descent step
    base_optimizer_args: str | None = None  # its other keyword arguments: a mapping, kept as JSON text
    optimizer_args: str | None = None  # the method's own settings (theta, eta, alpha, k, ...): a mapping
    nesterov: bool = False            # Nesterov momentum in the base SGD
    warmup_epochs: float = 0.0        # linear lr warm-up over these epochs, then the lr_schedule
    label_smoothing: float = 0.0      # in the training loss only
    grad_clip: float | None = None    # max global norm of the descent gradient
    wd_skip_norm_bias: bool = False   # no weight decay on biases and normalisation layers
    # sampling
    sampler: str = "reshuffle"        # how mini-batches are drawn
    batch_size: int = 128             # examples per step
    paper_compat: bool = False        # the reference code's sampler: no reweighting, with replacement
    # neural nets only (null: the defaults below); synthetic problems sample p_i ~ L_i exactly,
    # so these stay null there and setting one is an error
    importance_proxy: str | None = None    # per-sample loss or gradient-norm bound (default "loss")
    importance_mix: float | None = None    # p = (1 - mix) * proxy + mix * uniform (default 0.1)
    importance_refresh: int | None = None  # epochs between proxy refreshes (default 1)
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
    precision: str = "fp32"           # fp32, bf16 or fp16 (autocast; fp16 adds a loss scale)
    channels_last: bool = False       # models with 2-d convolutions: NHWC weights and batches
    compile: bool = False             # torch.compile the model for the training passes
    tf32: bool = True                 # CUDA only: TensorFloat-32 matmuls and convolutions

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
        for key in ("base_optimizer_args", "optimizer_args"):
            if isinstance(flat.get(key), Mapping):  # a nested mapping: kept as its JSON text
                flat[key] = json.dumps(dict(flat[key]), sort_keys=True, separators=(", ", ": "))
        return cls(**flat).validated()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that name this trial: every key, except a LATER_KEYS key at its default."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in self.to_dict().items() if not (k in LATER_KEYS and v == defaults[k])}

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
        from harness.data import SYNTHETIC, TORCHVISION, resolve_dataset
        from harness.models import resolve_model
        from harness.optim import BN_POLICIES
        from harness.precision import PRECISIONS
        from harness.samplers import SAMPLERS
        from harness.sharpness import SHARPNESS_METHODS
        from harness.theory import STEP_RULE_NAMES

        for name in ("dataset", "model", "optimizer", "base_optimizer"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(name, getattr(self, name), "a registered name or an import path "
                                                             "'package.module:attribute'")
        resolve_dataset(self.dataset)  # a registered name or a plug-in's import path
        resolve_model(self.model)
        _one_of("sampler", self.sampler, SAMPLERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _one_of("device", self.device, DEVICES)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("bn_policy", self.bn_policy, BN_POLICIES)
        _one_of("sharpness_method", self.sharpness_method, SHARPNESS_METHODS)
        _one_of("spectrum", self.spectrum, SPECTRA)
        _one_of("lam_schedule_unit", self.lam_schedule_unit, LAM_SCHEDULE_UNITS)
        if self.step_rule is not None:
            _one_of("step_rule", self.step_rule, STEP_RULE_NAMES)

        for name in ("download", "fake_data", "consistent", "paper_compat", "sharpness_trace", "nesterov",
                     "wd_skip_norm_bias", "channels_last", "compile", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "true or false")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ConfigError("data_root", self.data_root, "a folder path or null")
        if self.augment is not None and not isinstance(self.augment, bool):
            raise ConfigError("augment", self.augment, "true, false or null")
        for name in ("batch_size", "n_samples", "dim", "sharpness_samples"):
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
        if not is_number(self.val_fraction) or not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction", self.val_fraction, "a number in [0, 1) (0: no validation split)")
        if self.momentum >= 1.0:
            raise ConfigError("momentum", self.momentum, "a number in [0, 1)")
        _number_at_least("warmup_epochs", self.warmup_epochs, 0.0)
        _number_in("label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.grad_clip is not None and (not is_number(self.grad_clip) or self.grad_clip <= 0):
            raise ConfigError("grad_clip", self.grad_clip, "null or a number > 0")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov", self.nesterov, "false when momentum is 0 (Nesterov needs momentum > 0)")

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
        if synthetic and self.lam_schedule_unit != "step":
            raise ConfigError("lam_schedule_unit", self.lam_schedule_unit,
                              "step for a synthetic problem (it has no epochs)")
        if synthetic and self.val_fraction:
            raise ConfigError("val_fraction", self.val_fraction,
                              f"0 for a synthetic problem ({self.dataset} has no held-out data)")
        if synthetic and (self.precision != "fp32" or self.channels_last or self.compile):
            name = "precision" if self.precision != "fp32" else "channels_last" if self.channels_last else "compile"
            raise ConfigError(name, getattr(self, name), "its default for synthetic problems (they run in float64 numba)")
        if synthetic and self.batch_size > self.n_samples:
            raise ConfigError("batch_size", self.batch_size, f"at most n_samples = {self.n_samples}")
        if self.dataset in TORCHVISION and not self.fake_data and self.data_root is None:
            raise ConfigError("data_root", None, f"a folder holding the {self.dataset} files (or fake_data: true)")
        if self.data_root is not None and not self.download and not self.fake_data and self.dataset in TORCHVISION:
            if not os.path.isdir(self.data_root):
                raise ConfigError("data_root", self.data_root, "an existing folder (or download: true)")

        changes |= _resolve_optimizer(self) | _resolve_importance(self, synthetic)
        if self.step_rule is None and self.lr is None and "lr" not in changes:
            changes["lr"] = DEFAULT_LR
        if synthetic:
            _check_synthetic_optimizer(self)
        else:
            _check_optimizer_builds(self, changes)
        if self.step_rule is None:
            lr = changes.get("lr", self.lr)
            if lr is None or not is_number(lr) or lr <= 0:
                raise ConfigError("lr", lr, "a positive number (or a step_rule for synthetic problems)")
        elif self.lr is not None or (self.optimizer != "sgd" and self.rho is not None):
            raise ConfigError("step_rule", self.step_rule, "null when lr/rho are given (a step_rule computes both)")
        if self.eval_every is None:
            changes["eval_every"] = self.n_samples if synthetic else 1
        changes["warmup_epochs"] = float(self.warmup_epochs)
        changes["label_smoothing"] = float(self.label_smoothing)
        return dataclasses.replace(self, **changes)


def _resolve_optimizer(cfg: TrialConfig) -> dict[str, Any]:
    """Fill lam/rho as the optimizer name implies (sgd: rho 0, no lam; sam: lam 1; usam: lam 0;
    the variants lam 1 unless set; rho the method's default unless set) and canonicalise the
    keyword mappings."""
    from harness.optim import canonical_args, resolve_lam, resolve_rho

    lam = resolve_lam(cfg.optimizer, cfg.lam)
    changes: dict[str, Any] = {"lam": lam}
    if cfg.optimizer == "sgd" or cfg.step_rule is None:
        changes["rho"] = resolve_rho(cfg.optimizer, cfg.rho)
    elif isinstance(lam, str):
        raise ConfigError("lam", cfg.lam, "a number in [0, 1] with a step_rule (the theory needs a fixed lam)")
    for key in ("base_optimizer_args", "optimizer_args"):
        changes[key] = canonical_args(key, getattr(cfg, key))
    return changes


_SYNTHETIC_OPTIMIZERS = ("sgd", "sam", "usam", "unified")


def _check_synthetic_optimizer(cfg: TrialConfig) -> None:
    """The synthetic engine runs Unified SAM over plain gradient descent and nothing else."""
    if cfg.optimizer not in _SYNTHETIC_OPTIMIZERS:
        raise ConfigError("optimizer", cfg.optimizer, f"{', '.join(_SYNTHETIC_OPTIMIZERS)} for a synthetic problem")
    defaults = TrialConfig()
    for name in ("base_optimizer", "base_optimizer_args", "optimizer_args", "nesterov", "warmup_epochs",
                 "label_smoothing", "grad_clip", "wd_skip_norm_bias"):
        if getattr(cfg, name) != getattr(defaults, name):
            raise ConfigError(name, getattr(cfg, name), f"{getattr(defaults, name)!r} for a synthetic problem "
                                                        "(plain gradient descent)")


def _check_optimizer_builds(cfg: TrialConfig, changes: dict[str, Any]) -> None:
    """Build the optimizer once on a dummy parameter: import paths, keyword names and values
    fail here, in one line, before any trial starts."""
    import torch

    from harness.optim import build_optimizer

    lr = changes.get("lr", cfg.lr)
    try:
        build_optimizer(
            cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))], lr=lr if is_number(lr) and lr > 0 else 1.0,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, rho=changes.get("rho", cfg.rho),
            lam=changes["lam"], bn_policy=cfg.bn_policy, base_optimizer=cfg.base_optimizer,
            base_optimizer_args=changes["base_optimizer_args"], optimizer_args=changes["optimizer_args"],
            grad_clip=cfg.grad_clip,
        )
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        field = "base_optimizer_args" if cfg.base_optimizer_args else "optimizer"
        raise ConfigError(field, getattr(cfg, field), f"settings the class accepts ({' '.join(str(exc).split())})") from None


def _resolve_importance(cfg: TrialConfig, synthetic: bool) -> dict[str, Any]:
    """The importance-sampling proxy settings that will run: the network defaults where
    unset; on a synthetic problem none applies (p_i ~ L_i exactly), so they stay null."""
    given = {name: getattr(cfg, name) for name in ("importance_proxy", "importance_mix", "importance_refresh")}
    if synthetic:
        for name, value in given.items():
            if value is not None:
                raise ConfigError(name, value, "null for synthetic problems (importance sampling there uses "
                                               "p_i proportional to the exact L_i: no proxy, mix or refresh)")
        return {}
    resolved = {name: IMPORTANCE_DEFAULTS[name] if value is None else value for name, value in given.items()}
    _one_of("importance_proxy", resolved["importance_proxy"], IMPORTANCE_PROXIES)
    _number_in("importance_mix", resolved["importance_mix"], 0.0, 1.0)
    _positive_int("importance_refresh", resolved["importance_refresh"])
    return resolved


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
