"""The trial runner: one validated config in, one record per evaluation out. No Ray here.

Timing belongs to the runner alone (as in AlgoPerf's submission runner): the clock for
training stops around evaluation and sharpness, and the device is synchronised before
every clock read, so ``time_train`` is comparable across optimizers and devices.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from harness.config import ConfigError, TrialConfig
from harness.records import Record, new_record


class Trial(Protocol):
    """What the sweep driver needs from a trial: records, a status, resumable state."""

    status: str  # "ok" or "diverged"

    def records(self) -> Iterator[Record]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def info(self) -> dict[str, Any]: ...


def build_trial(cfg: TrialConfig) -> Trial:
    """The engine for a config: the numba kernel for synthetic problems, torch otherwise."""
    if cfg.is_synthetic:
        from harness.synthetic import SyntheticTrial

        return SyntheticTrial(cfg)
    return NetTrial(cfg)


def run_trial(cfg: TrialConfig, checkpoint: dict[str, Any] | None = None) -> Iterator[Record]:
    """Run a trial (or continue it from ``checkpoint``) and yield its records."""
    trial = build_trial(cfg)
    if checkpoint is not None:
        trial.load_state_dict(checkpoint)
    yield from trial.records()


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "auto or cpu (this machine has no CUDA device)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


class Clock:
    """Wall-clock that synchronises the device first, so queued GPU work is counted."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based) of ``total``: a linear
    ramp to 1 over the first ``warmup`` steps, then the schedule over the steps left."""
    if step < warmup:
        return (step + 1) / warmup
    step, total = step - warmup, max(total - warmup, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if schedule == "step":  # x0.1 at 50% and again at 75% of training
        return 0.1 ** ((step >= 0.5 * total) + (step >= 0.75 * total))
    raise ConfigError("lr_schedule", schedule, "constant, step or cosine for neural networks")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class NetTrial:
    """Train a network on a classification dataset with a Unified SAM family optimizer."""

    def __init__(self, cfg: TrialConfig):
        from harness.data import load_classification
        from harness.models import build_model
        from harness.optim import build_optimizer, param_groups
        from harness.precision import Precision
        from harness.samplers import build_sampler

        if cfg.lr_schedule == "decreasing":
            raise ConfigError("lr_schedule", cfg.lr_schedule, "constant, step or cosine for neural networks")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.clock = Clock(self.device)
        self.precision = Precision(cfg.precision, self.device, tf32=cfg.tf32,
                                   channels_last=cfg.channels_last, compile=cfg.compile)
        _seed_everything(cfg.seed)
        self.data = load_classification(cfg, self.device)
        self.model = build_model(
            cfg.model, self.data.input_shape, self.data.num_classes, width=cfg.width, depth=cfg.depth
        ).to(self.device)
        self.train_model = self.precision.prepare_model(self.model, cfg.model)  # compiled or the model
        self.sampler = build_sampler(
            cfg.sampler, self.data.n_train, cfg.batch_size, seed=cfg.seed,
            paper_compat=cfg.paper_compat, mix=cfg.importance_mix, proxy=cfg.importance_proxy,
        )
        self.optimizer = build_optimizer(
            cfg.optimizer, param_groups(self.model, cfg.wd_skip_norm_bias), lr=cfg.lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay, nesterov=cfg.nesterov, rho=cfg.rho, lam=cfg.lam, model=self.model,
            bn_policy=cfg.bn_policy, base_optimizer=cfg.base_optimizer,
            base_optimizer_args=cfg.base_optimizer_args, optimizer_args=cfg.optimizer_args, grad_clip=cfg.grad_clip,
            lam_every=self.sampler.batches_per_epoch if cfg.lam_schedule_unit == "epoch" else 1,
        )
        self.augment_rng = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        self.total_steps = (
            cfg.epochs * self.steps_per_epoch if cfg.epochs is not None else cfg.iterations
        )
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        # A constant lr needs no scheduler (and LambdaLR costs a Python call every step).
        self.scheduler = None if cfg.lr_schedule == "constant" and not warmup else torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(cfg.lr_schedule, step, self.total_steps, warmup)
        )
        self.status = "ok"
        self.step = 0
        self.epoch = 0
        self.evaluations = 0
        self.grad_evals = 0
        self.grad_samples = 0     # per-sample gradients: batch size x passes
        self.refresh_samples = 0  # per-sample forward passes of importance-proxy refreshes
        self.elapsed = {"train": 0.0, "eval": 0.0, "sharpness": 0.0, "total": 0.0}
        self._sharpness_data: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- the training loop ------------------------------------------------------------
    def records(self) -> Iterator[Record]:
        cfg = self.cfg
        started = self.clock() - self.elapsed["total"]
        while self.epoch < self.total_epochs and self.status == "ok":
            t0 = self.clock()
            if cfg.sampler == "importance" and self.epoch % cfg.importance_refresh == 0:
                self._refresh_importance()
            loss_sum, correct, seen = self._train_epoch()
            # One synchronisation per epoch: the loss sum stays on the device until here.
            train_loss = (loss_sum / max(seen, 1)).item()
            train_acc = correct.item() / max(seen, 1)
            self.elapsed["train"] += self.clock() - t0
            self.epoch += 1
            if not math.isfinite(train_loss):
                self.status = "diverged"
            last = self.epoch == self.total_epochs or self.status != "ok"
            if self.epoch % cfg.eval_every and not last:
                continue
            self.evaluations += 1
            record = self._evaluate(train_loss, train_acc)
            self.elapsed["total"] = self.clock() - started
            record["time_total"] = self.elapsed["total"]
            yield record

    def _train_epoch(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        from harness.optim import take_step

        model, opt, precision = self.train_model, self.optimizer, self.precision
        smoothing, bn_policy, grad_clip = self.cfg.label_smoothing, self.cfg.bn_policy, self.cfg.grad_clip
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        steps = min(self.steps_per_epoch, self.total_steps - self.step)
        # Only reweighted importance sampling has non-unit weights; the plain mean saves
        # two ops a pass, which is measurable on small models.
        weighted = self.cfg.sampler == "importance" and not self.cfg.paper_compat
        # The hot loop of small models is bound by per-op overhead, not arithmetic: a step
        # keeps its predictions and targets, and the accuracy is one comparison per epoch.
        predictions: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []

        def run(closure: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
            return take_step(opt, closure, self.model, bn_policy, grad_clip)

        for _ in range(steps):
            indices, weights = self.sampler.next_batch()
            inputs, targets = self.data.train.get(indices.to(self.device), self.augment_rng)
            inputs = precision.prepare_inputs(inputs)
            if weighted:
                weights = weights.to(self.device)
            passes = 0  # the forward-backward passes this step really ran

            def closure() -> torch.Tensor:
                nonlocal passes
                with precision.autocast():
                    logits = model(inputs)
                    if weighted:
                        loss = (F.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
                                * weights).mean()
                    else:
                        loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)
                if not passes:  # train accuracy counts the predictions at x
                    predictions.append(logits.detach().argmax(1))
                precision.backward(loss)
                passes += 1
                return loss

            loss, _ = precision.step(opt, closure, run)  # fp16: a pass at x that overflowed skips the pass at x + e
            if self.scheduler is not None:
                self.scheduler.step()
            self.step += 1
            self.grad_evals += passes  # forward-backward passes: 2 for SAM, 1 on LookSAM's reuse steps
            self.grad_samples += passes * len(targets)
            loss_sum.add_(loss.detach(), alpha=len(targets))
            labels.append(targets)
            seen += len(targets)
        correct = ((torch.cat(predictions) == torch.cat(labels)).sum() if labels
                   else torch.zeros((), device=self.device, dtype=torch.long))
        return loss_sum, correct, seen

    def _refresh_importance(self) -> None:
        """Per-sample loss (or logit-gradient norm) proxy for importance sampling.

        Counted as training time: it is part of what importance sampling costs.
        """
        self.model.eval()
        scores = []
        with torch.no_grad():
            for inputs, targets in self.data.train_eval_batches(1024):
                logits = self.model(inputs)
                if self.cfg.importance_proxy == "loss":
                    scores.append(F.cross_entropy(logits, targets, reduction="none"))
                else:  # ||softmax - onehot||: the per-sample gradient norm w.r.t. the logits
                    probs = logits.softmax(1)
                    probs[torch.arange(len(targets), device=probs.device), targets] -= 1.0
                    scores.append(probs.norm(dim=1))
                self.refresh_samples += len(targets)
        self.sampler.update_scores(torch.cat(scores).clamp_min(1e-12).cpu())
        self.model.train()

    # -- measurement ------------------------------------------------------------------
    def _evaluate(self, train_loss: float, train_acc: float) -> Record:
        t0 = self.clock()
        test_loss, test_acc = self._test()
        val_loss, val_acc = self._test(self.data.val_batches(1024)) if self.data.val is not None else (None, None)
        weight_norm = torch.sqrt(sum(p.detach().float().pow(2).sum() for p in self.model.parameters())).item()
        self.elapsed["eval"] += self.clock() - t0
        sharp: dict[str, Any] = {}
        every = self.cfg.sharpness_every
        last = self.epoch == self.total_epochs
        if every and self.status == "ok" and (self.evaluations % every == 0 or last):
            t0 = self.clock()
            sharp = self._sharpness()
            self.elapsed["sharpness"] += self.clock() - t0
        group = self.optimizer.param_groups[0]
        lam = self.optimizer.current_lam(group) if self.cfg.lam is not None else None
        values = dict(
            epoch=self.step / self.steps_per_epoch, iteration=self.step, grad_evals=self.grad_evals,
            grad_samples=self.grad_samples, refresh_samples=self.refresh_samples,
            train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc,
            val_loss=val_loss, val_acc=val_acc,
            weight_norm=weight_norm, lr=group["lr"], rho=group.get("rho"), lam=lam,
            time_train=self.elapsed["train"], time_eval=self.elapsed["eval"],
            time_sharpness=self.elapsed["sharpness"], skipped_steps=self.precision.skipped_steps, **sharp,
        )
        return new_record(**values)  # a diverged trial's NaN/inf become None there

    def _test(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None) -> tuple[float, float]:
        """Mean loss and accuracy over ``batches`` (default: the test split)."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        with torch.no_grad():
            for inputs, targets in batches if batches is not None else self.data.test_batches(1024):
                logits = self.model(inputs)
                loss_sum += F.cross_entropy(logits, targets, reduction="sum").double()
                correct += (logits.argmax(1) == targets).sum()
                seen += len(targets)
        self.model.train()
        return loss_sum.item() / seen, correct.item() / seen

    def _sharpness(self) -> dict[str, Any]:
        from harness.sharpness import measure_sharpness

        if self._sharpness_data is None:
            # The same fixed subset for every trial and every measurement.
            self._sharpness_data = self.data.sharpness_subset(self.cfg.sharpness_samples, seed=0)
        inputs, targets = self._sharpness_data
        result = measure_sharpness(
            self.model, F.cross_entropy, inputs, targets, method=self.cfg.sharpness_method,
            trace=self.cfg.sharpness_trace, seed=self.cfg.seed + self.evaluations,
        )
        result.pop("seconds", None)
        return result

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python values only, so a checkpoint loads with
        ``torch.load(weights_only=True)`` and never runs code from shared storage."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "sampler": self.sampler.state_dict(),
            "augment_rng": self.augment_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": _numpy_rng_state(),
            "python_rng": random.getstate(),
            "precision": self.precision.state_dict(),
            "counters": {
                "status": self.status, "step": self.step, "epoch": self.epoch,
                "evaluations": self.evaluations, "grad_evals": self.grad_evals,
                "grad_samples": self.grad_samples, "refresh_samples": self.refresh_samples,
                "elapsed": dict(self.elapsed),
            },
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.augment_rng.set_state(state["augment_rng"])
        torch.set_rng_state(state["torch_rng"])
        _set_numpy_rng_state(state["numpy_rng"])
        random.setstate(_as_tuples(state["python_rng"]))
        if "precision" in state:  # checkpoints from before precision settings existed have none
            self.precision.load_state_dict(state["precision"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        counters = state["counters"]
        self.status = counters["status"]
        self.step, self.epoch = counters["step"], counters["epoch"]
        self.evaluations, self.grad_evals = counters["evaluations"], counters["grad_evals"]
        self.grad_samples, self.refresh_samples = counters["grad_samples"], counters["refresh_samples"]
        self.elapsed = dict(counters["elapsed"])

    def info(self) -> dict[str, Any]:
        return {"sampler_desc": self.sampler.describe(), "device": describe_device(self.device),
                "tf32": self.precision.tf32_used}


def _numpy_rng_state() -> dict[str, Any]:
    """NumPy's global Mersenne Twister state as a tensor and plain numbers (its own
    tuple holds an ndarray, which a weights-only load refuses)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a checkpoint may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
