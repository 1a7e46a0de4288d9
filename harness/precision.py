"""The numeric set-up of a trial: precision (fp32, bf16, fp16 autocast), the fp16 loss
scale across SAM's two passes, TF32 on CUDA, channels_last and torch.compile.

Why a module of its own: the trainer stays one code path (``Precision.step`` is
``optimizer.step`` when nothing is scaled), and the two-pass loss scaling lives next to the
other numeric choices instead of inside the optimizer.

- bf16 and fp16 run the forward passes (at x and at x + e) under ``torch.autocast``; the
  parameters, their gradients and the optimizer state stay fp32, so the ascent scale
  rho * (1 - lam + lam / ||g||) and the descent are computed in fp32.
- fp16 multiplies both losses by one scale per step and checks both passes' gradients for
  inf/NaN. Either pass overflowing skips the whole step (x stays where it was, the momentum
  buffers are untouched), halves the scale and counts one skipped step; 2,000 clean steps
  in a row double it (torch.amp.GradScaler's defaults). GradScaler itself does not fit:
  it unscales once per optimizer between updates and steps the optimizer itself, so it
  cannot see the gradient at x and the gradient at x + e of one step.
- TF32 (``tf32``) lets CUDA matmuls and convolutions use TensorFloat-32; it is ignored on
  CPU, and ``tf32_used`` says what a trial actually ran with.
- channels_last converts the model once and every batch once on the device (both SAM
  passes use the same converted batch); only models with 2-d convolutions accept it.
- compile wraps the model in ``torch.compile`` for the training passes only; evaluation
  and sharpness run the eager module (the same parameters), and checkpoints keep the
  eager module's keys.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

import torch

from harness.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class LossScaler:
    """A dynamic loss scale for fp16, shared by both passes of a SAM step."""

    def __init__(self, scale: float = 2.0 ** 16, growth: float = 2.0, backoff: float = 0.5,
                 interval: int = 2000):
        self.scale, self.growth, self.backoff, self.interval = scale, growth, backoff, interval
        self.good_steps = 0

    def unscale_(self, params: list[torch.Tensor]) -> bool:
        """Divide the gradients by the scale in place; True when all are finite (a sync)."""
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return True
        torch._foreach_mul_(grads, 1.0 / self.scale)
        return bool(torch.stack(torch._foreach_norm(grads)).isfinite().all())

    def update(self, finite: bool) -> None:
        if not finite:
            self.scale *= self.backoff
            self.good_steps = 0
            return
        self.good_steps += 1
        if self.good_steps == self.interval:
            self.scale *= self.growth
            self.good_steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self.good_steps = float(state["scale"]), int(state["good_steps"])


class Precision:
    """How a trial computes: autocast dtype, loss scale, TF32, memory layout, compilation."""

    def __init__(self, precision: str, device: torch.device, *, tf32: bool = True,
                 channels_last: bool = False, compile: bool = False):
        if precision not in PRECISIONS:
            raise ConfigError("precision", precision, ", ".join(PRECISIONS))
        self.precision, self.device = precision, device
        self.dtype = AUTOCAST_DTYPES[precision]
        self.channels_last, self.compile = channels_last, compile
        self.scaler = LossScaler() if precision == "fp16" else None
        self.skipped_steps = 0
        self.tf32_used = device.type == "cuda" and tf32
        if device.type == "cuda":  # process-wide switches: a trial sets both, every time
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32

    # -- model and inputs ------------------------------------------------------------------
    def prepare_model(self, model: torch.nn.Module, name: str = "model") -> Callable[..., torch.Tensor]:
        """Convert ``model`` in place (channels_last) and return what the training passes
        call: the compiled module, or ``model`` itself."""
        if self.channels_last:
            if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
                raise ConfigError("channels_last", True, f"false for model {name} (it has no 2-d convolutions)")
            model.to(memory_format=torch.channels_last)
        if self.compile:
            return torch.compile(model)
        return model

    def prepare_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """A batch in the model's layout (a no-op unless channels_last)."""
        if self.channels_last and inputs.dim() == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    # -- the step --------------------------------------------------------------------------
    def autocast(self) -> ContextManager[Any]:
        """The context for a forward pass and its loss."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, with the loss scaled under fp16."""
        (loss * self.scaler.scale if self.scaler is not None else loss).backward()

    def step(self, optimizer: Any, closure: Callable[[], torch.Tensor],
             run: Callable[[Callable[[], torch.Tensor]], Any] | None = None) -> Any:
        """One optimizer step; ``closure`` runs forward (under ``autocast()``) and
        ``backward()`` and returns the unscaled loss. ``run(closure)`` takes the step
        (``optimizer.step`` by default; the trainer passes ``harness.optim.take_step``,
        which also drives plug-in optimizers) and its result is returned."""
        run = run or optimizer.step
        if self.scaler is None:
            return run(closure)
        return self._scaled_step(optimizer, closure, run)

    def _scaled_step(self, optimizer: Any, closure: Callable[[], torch.Tensor],
                     run: Callable[[Callable[[], torch.Tensor]], Any]) -> Any:
        """``optimizer.step`` with one loss scale for both passes: after each backward the
        gradients are unscaled and checked. An overflow drops them, so the ascent moves
        nothing (and the second pass is not run), or, in the second pass, x is restored
        and the base optimizer skips every parameter: x and its momentum stay as they were.

        A skipped step still counts in the optimizer's t (lam schedules) and in the lr
        schedule, as torch's GradScaler leaves schedulers stepping on skipped steps.
        """
        params = [p for group in optimizer.param_groups for p in group["params"]]
        finite = True

        def scaled_closure() -> torch.Tensor:
            nonlocal finite
            if not finite:  # the pass at x overflowed: no pass at x + e
                return torch.zeros((), device=self.device)
            loss = closure()
            finite = self.scaler.unscale_(params)
            if not finite:
                optimizer.zero_grad()
            return loss

        out = run(scaled_closure)
        self.scaler.update(finite)
        self.skipped_steps += not finite
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"skipped_steps": self.skipped_steps,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped_steps = int(state["skipped_steps"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
