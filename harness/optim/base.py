"""The two-pass machinery every SAM-family method shares; a method only says where to ascend.

At step t, with g the minibatch gradient at x_t, a method names its ascent direction d
(SAM: d = g; VaSSO: an EMA of g; ASAM: T g in rescaled coordinates) and, optionally, a map
P back to weight space (ASAM: P d = T d; identity otherwise). Then

    e_t     = rho * (1 - lam_t + lam_t / (||d|| + eps)) * P(d)       # ascent
    x_{t+1} = base step from x_t with the gradient at x_t + e_t      # descent

so lam = 1 is the published, normalised method, lam = 0 its unnormalised form and 0 < lam < 1
the Unified SAM mix of the two (Oikonomou & Loizou, ICLR 2025). rho = 0 is the base
optimizer itself, bit for bit. Everything else lives here once: the step counter t (which the
lam schedules read), restoring x_t exactly, the BatchNorm policy, and checkpointed state.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from harness.errors import ConfigError, is_number
from harness.optim.registry import BN_POLICIES, LAM_ALLOWED, check_lam, lam_at

Tensors = list[torch.Tensor]


def _check_group(group: dict[str, Any]) -> None:
    rho, lam = group["rho"], group["lam"]
    if not is_number(rho) or rho < 0:
        raise ConfigError("rho", rho, "a number >= 0")
    if lam is None:
        if rho != 0:
            raise ConfigError("lam", lam, LAM_ALLOWED + " when rho > 0")
    else:
        check_lam(lam)


def global_norm(tensors: Tensors) -> torch.Tensor:
    """One L2 norm over all tensors (the norm SAM normalises by)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def dot(a: Tensors, b: Tensors) -> torch.Tensor:
    """<a, b> summed over all tensors."""
    return torch.stack([(x * y).sum() for x, y in zip(a, b)]).sum()


def scaled_into(out: Tensors, tensors: Tensors, scale: torch.Tensor | float) -> None:
    """out[i] = tensors[i] * scale, with no temporary: the same products, bit for bit, as
    ``torch._foreach_mul(tensors, scale)``.

    foreach ops have no ``out=``: scaling into a temporary and then copying x and adding
    costs a model-sized allocation and one more pass over memory, which on CPU is memory
    bound (ResNet-18's ascent: 29 ms against 21 ms, one thread). One multiply per tensor
    into ``out`` reads and writes each element once. On an accelerator, where kernel
    launches cost more than a pass over memory, two multi-tensor kernels (copy, then scale
    in place) do it instead."""
    if tensors and tensors[0].device.type == "cpu":
        for o, t in zip(out, tensors):
            torch.mul(t, scale, out=o)
    else:
        torch._foreach_copy_(out, tensors)
        torch._foreach_mul_(out, scale)


@contextlib.contextmanager
def running_stats_kept(model: torch.nn.Module | None, policy: str = "clean") -> Iterator[None]:
    """Around a forward pass at x + e: with policy "clean", the BatchNorm running statistics
    (and num_batches_tracked) are put back afterwards, so they come from the clean pass only.

    Saving and restoring the buffers, rather than switching ``track_running_stats`` off,
    leaves every module attribute as it is, so a compiled model sees the same module both
    passes and is not re-traced."""
    if policy not in BN_POLICIES:
        raise ConfigError("bn_policy", policy, ", ".join(BN_POLICIES))
    buffers: Tensors = []
    if policy == "clean" and model is not None:
        for module in model.modules():
            if isinstance(module, _BatchNorm) and module.track_running_stats and module.running_mean is not None:
                buffers += [b for b in (module.running_mean, module.running_var, module.num_batches_tracked)
                            if b is not None]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, copy in zip(buffers, saved):
                buffer.copy_(copy)


class TwoPassSAM(torch.optim.Optimizer):
    """A SAM-family method around a base optimizer (SGD by default); subclasses override
    ``direction`` (and, where the method needs it, ``to_weights``, ``ascends_now`` and
    ``adjust_descent``). Class attributes: ``DEFAULT_RHO``, ``EPS`` (in ||d|| + eps) and
    ``HYPER``, the method's own hyperparameters with their defaults.

    ``rho`` and ``lam`` live in ``param_groups`` next to the base optimizer's ``lr`` and
    ``momentum``: the groups are shared with the base optimizer, so LR schedulers and Ray
    Tune can change any of them between steps. ``lam`` is a float in [0, 1], ``"1/t"`` or
    ``"1-1/t"`` (or None on a group with rho = 0). One global norm runs over the direction of
    every parameter with a gradient; a group with rho = 0 is not moved. With rho = 0
    everywhere no second pass is needed and the step is the base optimizer's, bit for bit.
    ``t`` counts steps (1 during the first) and is saved by state_dict(), as is any state a
    method keeps per parameter (EMAs), which lives in ``self.state`` beside the base's. A lam
    schedule advances once every ``lam_every`` steps: 1 is the paper's per-step schedule;
    the steps of an epoch make 1-1/t an epoch-wise schedule.

    Two ways to drive it, each one step per call pair or per step() call:

    Two passes, explicitly (the same batch both times)::

        loss_fn(model(x), y).backward()      # gradient at x
        opt.first_step()                     # x -> x + e, zeroes the gradients
        if opt.needs_second_pass:            # False at rho = 0 and on LookSAM's reuse steps
            with opt.perturbed_pass():       # BatchNorm statistics kept (bn_policy "clean")
                loss_fn(model(x), y).backward()
        opt.second_step()                    # back to x exactly, base step

    A closure (forward and backward on the same batch, returning the loss)::

        loss = opt.step(closure)             # the clean-pass loss
    """

    DEFAULT_RHO: ClassVar[float] = 0.05
    EPS: ClassVar[float] = 1e-12
    HYPER: ClassVar[dict[str, Any]] = {}
    KEEP_CLEAN_GRADS: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float | None = None,
        lam: float | str | None = 1.0,
        eps: float | None = None,
        model: torch.nn.Module | None = None,
        bn_policy: str = "clean",
        grad_clip: float | None = None,
        lam_every: int = 1,
        **kwargs: Any,
    ):
        if bn_policy not in BN_POLICIES:
            raise ConfigError("bn_policy", bn_policy, ", ".join(BN_POLICIES))
        eps = self.EPS if eps is None else eps
        if not is_number(eps) or eps <= 0:
            raise ConfigError("eps", eps, "a number > 0")
        if grad_clip is not None and (not is_number(grad_clip) or grad_clip <= 0):
            raise ConfigError("grad_clip", grad_clip, "null or a number > 0")
        if isinstance(lam_every, bool) or not isinstance(lam_every, int) or lam_every < 1:
            raise ConfigError("lam_every", lam_every, "an integer >= 1 (steps per lam schedule tick)")
        hyper = {name: kwargs.pop(name, default) for name, default in self.HYPER.items()}
        clash = {"rho", "lam"} & set(inspect.signature(base_optimizer).parameters)
        if clash:
            raise TypeError(f"{base_optimizer.__name__} has its own {sorted(clash)}: it cannot be a base optimizer")
        rho = self.DEFAULT_RHO if rho is None else rho
        super().__init__(params, dict(rho=rho, lam=lam, **kwargs))
        for group in self.param_groups:
            _check_group(group)
        # One list of groups and one state for both optimizers: rho, lam and lr sit in the
        # same dicts, and the momentum buffers are part of this optimizer's state_dict.
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults = {**self.base_optimizer.defaults, **self.defaults}
        self.eps = eps
        self.model = model
        self.bn_policy = bn_policy
        self.grad_clip = grad_clip
        self.lam_every = lam_every
        self.t = 0
        for name, value in hyper.items():
            setattr(self, name, value)
        self.check_hyper()
        self._buffers: dict[torch.Tensor, torch.Tensor] = {}  # reused storage for x + e
        self._restore: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._perturbed = False
        self._clean: dict[torch.Tensor, torch.Tensor] | None = None  # gradients at x (KEEP_CLEAN_GRADS)

    # -- what a method overrides -------------------------------------------------------------
    def check_hyper(self) -> None:
        """Refuse bad values of the method's own hyperparameters (one-line ConfigError)."""

    def direction(self, params: Tensors, grads: Tensors) -> Tensors:
        """The ascent direction d at x for each parameter with a gradient (SAM: g itself).
        Called once per ascending step; may update per-parameter state (EMAs)."""
        return grads

    def to_weights(self, params: Tensors, directions: Tensors) -> Tensors:
        """Map d back to weight space before scaling (ASAM: T d); identity otherwise."""
        return directions

    def ascends_now(self) -> bool:
        """Whether step t takes the perturbed pass (LookSAM: every k-th step only)."""
        return True

    def rho_at(self, group: dict[str, Any]) -> float:
        """The radius this step uses for a group (GSAM: rho follows the lr)."""
        return group["rho"]

    def adjust_descent(self, params: Tensors, clean_grads: dict[torch.Tensor, torch.Tensor] | None) -> None:
        """Change ``p.grad`` before the base step. ``clean_grads`` holds the gradients at x
        when ``KEEP_CLEAN_GRADS`` is set (GSAM, LookSAM) and the step was perturbed, else
        None. On steps without a perturbed pass ``p.grad`` is the clean gradient."""

    # -- the shared machinery ----------------------------------------------------------------
    @property
    def needs_second_pass(self) -> bool:
        """Between first_step and second_step: whether this step takes the perturbed pass.
        Otherwise: whether any group has rho > 0."""
        if self._restore is not None:
            return self._perturbed
        return any(group["rho"] != 0 for group in self.param_groups)

    def current_lam(self, group: dict[str, Any] | int = 0) -> float | None:
        """lam_t of a group (a group dict or its index) at the last step taken, or at the
        first step before any; None for a group without lam (plain SGD)."""
        if isinstance(group, int):
            group = self.param_groups[group]
        return None if group["lam"] is None else lam_at(group["lam"], self._lam_tick(max(self.t, 1)))

    def _lam_tick(self, t: int) -> int:
        """The schedule's t at step t: 1 during the first ``lam_every`` steps, then 2, ..."""
        return (t - 1) // self.lam_every + 1

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Ascent: move to x + e along the gradients now in ``.grad`` (taken at x).

        x itself is kept untouched: the parameters are pointed at a second buffer holding
        x + e, and second_step points them back (no copy, no rounding). Parameters without a
        gradient are neither in ||d|| nor moved. With ``zero_grad`` the gradients are dropped
        afterwards; keep them with ``zero_grad=False`` and zero them yourself before the
        second backward. When the step takes no perturbed pass (rho = 0 everywhere, a
        LookSAM reuse step) nothing moves and the gradients stay for second_step.
        """
        if self._restore is not None:
            raise RuntimeError("first_step() called twice without second_step() in between")
        for group in self.param_groups:
            _check_group(group)
        self.t += 1
        self._restore = []
        self._clean = None
        self._perturbed = any(group["rho"] != 0 for group in self.param_groups) and self.ascends_now()
        if not self._perturbed:
            return
        per_group = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
        params = [p for ps in per_group for p in ps]
        grads = [p.grad for p in params]
        if self.KEEP_CLEAN_GRADS:
            self._clean = {p: g.clone() for p, g in zip(params, grads)}
        directions = self.direction(params, grads) if params else []
        norm = global_norm(directions) if directions else None
        start = 0
        for group, ps in zip(self.param_groups, per_group):
            d = directions[start:start + len(ps)]
            start += len(ps)
            if group["rho"] == 0 or not ps:
                continue
            lam = lam_at(group["lam"], self._lam_tick(self.t))
            scale = self.rho_at(group) * (1.0 - lam + lam / (norm + self.eps))
            moved = [self._buffer(p) for p in ps]
            scaled_into(moved, self.to_weights(ps, d), scale)  # e, written into the spare buffers
            torch._foreach_add_(moved, ps)                     # x + e (the same sum as x + e)
            for p, x_plus_e in zip(ps, moved):
                self._restore.append((p, p.data))
                p.data = x_plus_e
        if zero_grad:
            self.zero_grad()

    def _buffer(self, p: torch.Tensor) -> torch.Tensor:
        buffer = self._buffers.get(p)
        if buffer is None or buffer.data_ptr() == p.data_ptr():
            buffer = self._buffers[p] = torch.empty_like(p)
        return buffer

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Descent: point the parameters back at x (exact: x was never touched), let the
        method adjust the gradients now in ``.grad`` (taken at x + e, or at x on a step
        without perturbed pass), clip their global norm to ``grad_clip`` if set, and take the
        base optimizer's step."""
        if self._restore is None:
            raise RuntimeError("second_step() called without first_step() before it")
        for p, x in self._restore:
            self._buffers[p] = p.data
            p.data = x
        self._restore = None
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if any(group["rho"] != 0 for group in self.param_groups):
            self.adjust_descent(params, self._clean)
        self._clean = None
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One whole step. ``closure`` runs forward and backward on the SAME batch at the
        current weights and returns the loss; it must not zero gradients (this method zeroes
        them before each call). It is called at x, then at x + e inside ``perturbed_pass()``
        unless the step takes no perturbed pass. Returns the loss at x."""
        if closure is None:
            raise TypeError(f"{type(self).__name__}.step needs a closure; without one use first_step()/second_step()")
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        if self._perturbed:
            with self.perturbed_pass(), torch.enable_grad():
                closure()
        self.second_step(zero_grad=False)
        return loss

    def perturbed_pass(self) -> contextlib.AbstractContextManager[None]:
        """Wrap the forward pass at x + e: with bn_policy "clean" the BatchNorm layers of
        ``model`` normalise with the batch statistics as usual, and their running statistics
        are restored afterwards (see ``running_stats_kept``)."""
        return running_stats_kept(self.model, self.bn_policy)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (momentum buffers) and the method's per-parameter state
        (EMAs), the groups (rho, lam, lr, ...) and the step counter t."""
        state = super().state_dict()
        state["t"] = self.t
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "t" not in state_dict:
            raise ValueError(f"not a {type(self).__name__} state_dict: the step counter 't' is missing")
        state_dict = dict(state_dict)
        t = int(state_dict.pop("t"))
        super().load_state_dict(state_dict)
        # torch builds new group and state objects on load: share them with the base again.
        self.base_optimizer.param_groups = self.param_groups
        self.base_optimizer.state = self.state
        self.t = t


def check_number(method: str, name: str, value: Any, low: float, high: float | None = None,
                 integer: bool = False) -> None:
    """One-line error for a method hyperparameter outside [low, high]."""
    ok = is_number(value) and value >= low and (high is None or value <= high)
    if integer:
        ok = ok and isinstance(value, int)
    if not ok:
        kind = "an integer" if integer else "a number"
        allowed = f"{kind} >= {low:g}" if high is None else f"{kind} in [{low:g}, {high:g}]"
        raise ConfigError(f"optimizer_args.{name}", value, f"{allowed} for optimizer {method}")


def check_choice(method: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"optimizer_args.{name}", value, f"{', '.join(allowed)} for optimizer {method}")
