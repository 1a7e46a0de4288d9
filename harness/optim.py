"""Unified SAM (Oikonomou & Loizou, ICLR 2025) on top of any torch optimizer, and the
optimizer names a config may use.

At step t, with g the minibatch gradient at x_t (docs/science.md section 1):

    e_t     = rho * (1 - lam_t + lam_t / (||g|| + eps)) * g      # ascent
    x_{t+1} = base step from x_t with the gradient at x_t + e_t   # descent

lam = 1 is SAM, lam = 0 is USAM (unclipped rho * g), rho = 0 is the base optimizer itself.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from harness.errors import ConfigError, is_number

LAM_SCHEDULES = ("1/t", "1-1/t")
BN_POLICIES = ("clean", "both")

# name -> the settings it fixes (harness.config._resolve_optimizer reads this).
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"rho": 0.0, "lam": None},
    "sam": {"lam": 1.0},
    "usam": {"lam": 0.0},
    "unified": {},
}

_LAM_ALLOWED = "a number in [0, 1], '1/t' or '1-1/t'"


def lam_at(lam: float | str, t: int) -> float:
    """lam_t at step t (t = 1 at the first step) for a fixed lam or a schedule name."""
    if lam == "1/t":
        return 1.0 / t
    if lam == "1-1/t":
        return 1.0 - 1.0 / t
    _check_lam(lam)
    return float(lam)


def _check_lam(lam: Any) -> None:
    if isinstance(lam, str):
        if lam not in LAM_SCHEDULES:
            raise ConfigError("lam", lam, _LAM_ALLOWED)
    elif not is_number(lam) or not 0.0 <= lam <= 1.0:
        raise ConfigError("lam", lam, _LAM_ALLOWED)


def _check_group(group: dict[str, Any]) -> None:
    rho, lam = group["rho"], group["lam"]
    if not is_number(rho) or rho < 0:
        raise ConfigError("rho", rho, "a number >= 0")
    if lam is None:
        if rho != 0:
            raise ConfigError("lam", lam, _LAM_ALLOWED + " when rho > 0")
    else:
        _check_lam(lam)



class UnifiedSAM(torch.optim.Optimizer):
    """Unified SAM around a base optimizer (SGD by default).

    ``rho`` and ``lam`` live in ``param_groups`` next to the base optimizer's ``lr``,
    ``momentum`` and so on: the groups are shared with the base optimizer, so LR schedulers
    and Ray Tune can change any of them between steps. ``lam`` is a float in [0, 1],
    ``"1/t"`` or ``"1-1/t"`` (or None on a group with rho = 0: no perturbation). A group
    with rho = 0 is not moved by the ascent but, as the update rule says, still descends
    with the gradient at x + e of the other groups; with rho = 0 everywhere
    ``needs_second_pass`` is False and the optimizer is the base optimizer, bit for bit.
    ``t`` counts steps (1 during the first); the lam schedules read it and state_dict()
    saves it.

    Two ways to drive it; either counts one step per first_step/second_step pair or per
    step() call:

    Two passes, explicitly (the same batch both times)::

        loss_fn(model(x), y).backward()      # gradient at x
        opt.first_step()                     # x -> x + e, zeroes the gradients
        if opt.needs_second_pass:
            with opt.perturbed_pass():       # BatchNorm statistics frozen (bn_policy "clean")
                loss_fn(model(x), y).backward()
        opt.second_step()                    # back to x exactly, base step

    A closure, as torch optimizers and Lightning-style loops use them::

        def closure():
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        loss = opt.step(closure)             # the clean-pass loss

    ``bn_policy`` "clean" freezes the running statistics of the BatchNorm layers of
    ``model`` during the perturbed pass, so they come from the clean pass only; "both" lets
    both passes update them. Without a ``model`` there is nothing to freeze.

    torch's LR schedulers watch step(): with the two-pass API they warn once, harmlessly,
    that lr_scheduler.step() came before optimizer.step().
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float = 0.05,
        lam: float | str | None = 1.0,
        eps: float = 1e-12,
        model: torch.nn.Module | None = None,
        bn_policy: str = "clean",
        **base_kwargs: Any,
    ):
        if bn_policy not in BN_POLICIES:
            raise ConfigError("bn_policy", bn_policy, ", ".join(BN_POLICIES))
        if not is_number(eps) or eps <= 0:
            raise ConfigError("eps", eps, "a number > 0")
        clash = {"rho", "lam"} & set(inspect.signature(base_optimizer).parameters)
        if clash:
            raise TypeError(f"{base_optimizer.__name__} has its own {sorted(clash)}: it cannot be a base optimizer")
        super().__init__(params, dict(rho=rho, lam=lam, **base_kwargs))
        for group in self.param_groups:
            _check_group(group)
        # One list of groups and one state for both optimizers: rho, lam and lr sit in the
        # same dicts, and the momentum buffers are part of this optimizer's state_dict.
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults = {**self.base_optimizer.defaults, **self.defaults}
        self.eps = eps
        self.model = model
        self.bn_policy = bn_policy
        self.t = 0
        self._copies: dict[torch.Tensor, torch.Tensor] = {}  # reused buffers for the exact x
        self._restore: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    @property
    def needs_second_pass(self) -> bool:
        """False when every group has rho = 0: skip the perturbed forward-backward."""
        return any(group["rho"] != 0 for group in self.param_groups)

    def current_lam(self, group: dict[str, Any] | int = 0) -> float | None:
        """lam_t of a group (a group dict or its index) at the last step taken, or at the
        first step before any; None for a group without lam (plain SGD)."""
        if isinstance(group, int):
            group = self.param_groups[group]
        return None if group["lam"] is None else lam_at(group["lam"], max(self.t, 1))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> None:
        """Ascent: move to x + e along the gradients now in ``.grad`` (taken at x).

        Keeps an exact copy of x for second_step. Parameters without a gradient are
        neither counted in ||g|| nor moved. With ``zero_grad`` the gradients are dropped
        afterwards (their tensors serve as scratch space first); keep them with
        ``zero_grad=False``, and zero them yourself before the second backward. With
        rho = 0 everywhere nothing moves and the gradients stay for second_step.
        """
        if self._restore is not None:
            raise RuntimeError("first_step() called twice without second_step() in between")
        for group in self.param_groups:
            _check_group(group)
        self.t += 1
        self._restore = ([], [])
        if not self.needs_second_pass:
            return
        with_grad = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
        all_grads = [p.grad for params in with_grad for p in params]
        if all_grads:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(all_grads)))
        plan = []
        for group, params in zip(self.param_groups, with_grad):
            if group["rho"] != 0 and params:
                lam = lam_at(group["lam"], self.t)
                plan.append((params, group["rho"] * (1.0 - lam + lam / (norm + self.eps))))
        moved = [p for params, _ in plan for p in params]
        for p in moved:
            if p not in self._copies:
                self._copies[p] = torch.empty_like(p)
        copies = [self._copies[p] for p in moved]
        if moved:
            torch._foreach_copy_(copies, moved)
        for params, scale in plan:
            grads = [p.grad for p in params]
            if zero_grad:  # these gradients are dropped below: scale them in place, no new memory
                torch._foreach_mul_(grads, scale)
                torch._foreach_add_(params, grads)
            else:
                torch._foreach_add_(params, torch._foreach_mul(grads, scale))
        self._restore = (moved, copies)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = True) -> None:
        """Descent: restore x exactly (a copy, not x + e - e) and take the base optimizer's
        step with the gradients now in ``.grad`` (taken at x + e)."""
        if self._restore is None:
            raise RuntimeError("second_step() called without first_step() before it")
        moved, copies = self._restore
        self._restore = None
        if moved:
            torch._foreach_copy_(moved, copies)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One whole step. ``closure`` runs forward and backward on the SAME batch at the
        current weights and returns the loss; it must not zero gradients (this method
        zeroes them before each call). It is called at x, then at x + e inside
        ``perturbed_pass()`` (once only when ``needs_second_pass`` is False). Returns the
        loss at x; the gradients of the last call stay in ``.grad``."""
        if closure is None:
            raise TypeError("UnifiedSAM.step needs a closure; without one use first_step()/second_step()")
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        if self.needs_second_pass:
            with self.perturbed_pass(), torch.enable_grad():
                closure()
        self.second_step(zero_grad=False)
        return loss

    @contextlib.contextmanager
    def perturbed_pass(self) -> Iterator[None]:
        """Wrap the forward pass at x + e: with bn_policy "clean" the BatchNorm layers of
        ``model`` normalise with the batch statistics as usual but do not update their
        running statistics (nor num_batches_tracked)."""
        frozen: list[_BatchNorm] = []
        if self.bn_policy == "clean" and self.model is not None:
            frozen = [m for m in self.model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        for module in frozen:
            module.track_running_stats = False
        try:
            yield
        finally:
            for module in frozen:
                module.track_running_stats = True

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state (momentum buffers), the groups (rho, lam, lr, ...)
        and the step counter t that the lam schedules read."""
        state = super().state_dict()
        state["t"] = self.t
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "t" not in state_dict:
            raise ValueError("not a UnifiedSAM state_dict: the step counter 't' is missing")
        state_dict = dict(state_dict)
        t = int(state_dict.pop("t"))
        super().load_state_dict(state_dict)
        # torch builds new group and state objects on load: share them with the base again.
        self.base_optimizer.param_groups = self.param_groups
        self.base_optimizer.state = self.state
        self.t = t


def build_optimizer(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    rho: float | None = None,
    lam: float | str | None = None,
    model: torch.nn.Module | None = None,
    bn_policy: str = "clean",
) -> UnifiedSAM:
    """The optimizer a config names, always a UnifiedSAM over SGD so that a training loop
    has one code path: sgd is rho = 0, sam fixes lam = 1, usam lam = 0, unified takes lam."""
    if name not in OPTIMIZERS:
        raise ConfigError("optimizer", name, ", ".join(OPTIMIZERS))
    fixed = OPTIMIZERS[name]
    if "rho" in fixed:
        if rho not in (None, fixed["rho"]):
            raise ConfigError("rho", rho, f"null or {fixed['rho']} for optimizer {name}")
        rho = fixed["rho"]
    elif rho is None:
        raise ConfigError("rho", rho, f"a number >= 0 for optimizer {name}")
    if "lam" in fixed:
        if lam is not None and lam != fixed["lam"]:
            raise ConfigError("lam", lam, f"null or {fixed['lam']} for optimizer {name}")
        lam = fixed["lam"]
    elif lam is None:
        raise ConfigError("lam", lam, f"{_LAM_ALLOWED} for optimizer {name}")
    return UnifiedSAM(
        params, torch.optim.SGD, rho=rho, lam=lam, model=model, bn_policy=bn_policy,
        lr=lr, momentum=momentum, weight_decay=weight_decay,
    )
