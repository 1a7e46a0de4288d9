"""From a config's optimizer settings to an optimizer object, and one step for any kind.

Three kinds of optimizer run in a trial: a registry name (a ``TwoPassSAM``), a plug-in
torch optimizer named by import path (one gradient per step, or as many as its step()
asks for), and a plug-in two-pass optimizer with ``first_step``/``second_step`` in the
style of davda54/sam (two gradients). ``take_step`` drives each and counts the
forward-backward passes it ran, so the records' gradient counts are true for all of them.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable, Iterable

import torch

from harness.errors import ConfigError
from harness.optim.base import TwoPassSAM, running_stats_kept
from harness.optim.registry import BASE_OPTIMIZERS, OPTIMIZERS, optimizer_names, resolve_lam, resolve_rho
from harness.plugins import is_import_path, load_object

_NORM_LAYERS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm,
                torch.nn.modules.instancenorm._InstanceNorm)


def parse_args(field: str, value: Any) -> dict[str, Any]:
    """A keyword-argument mapping given as a mapping or as its JSON/YAML-flow text."""
    if value is None:
        return {}
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(field, value, "a mapping such as '{betas: [0.9, 0.99]}'") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(field, value, "a mapping of keyword names to values, e.g. '{betas: [0.9, 0.99]}'")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}


def canonical_args(field: str, value: Any) -> str | None:
    """The stored form of a keyword mapping: sorted JSON text (None when empty)."""
    args = parse_args(field, value)
    return json.dumps(args, sort_keys=True, separators=(", ", ": ")) if args else None


def optimizer_class(field: str, name: str, registry: dict[str, str]) -> type:
    """A registered or imported torch optimizer class; one-line ConfigError otherwise."""
    if name in registry:
        return load_object(field, registry[name])
    if not is_import_path(name):
        raise ConfigError(field, name, ", ".join(registry) + " or an import path 'package.module:Class'")
    cls = load_object(field, name)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise ConfigError(field, name, "a torch.optim.Optimizer subclass")
    return cls


def _accepts(cls: type) -> tuple[set[str], bool]:
    params = inspect.signature(cls).parameters
    return set(params), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def base_kwargs(cls: type, field: str, *, lr: float, momentum: float, weight_decay: float, nesterov: bool,
                extra: dict[str, Any]) -> dict[str, Any]:
    """lr, momentum, weight_decay and nesterov as the class takes them, plus ``extra``.
    A non-default value the class has no argument for is an error, never dropped."""
    names, open_kwargs = _accepts(cls)
    kwargs: dict[str, Any] = {"lr": lr}
    for key, value, default in (("momentum", momentum, 0.0), ("weight_decay", weight_decay, None),
                                ("nesterov", nesterov, False)):
        if key in names or open_kwargs:
            if value != default or key == "weight_decay":
                kwargs[key] = value
        elif value != (0.0 if key == "weight_decay" else default):
            raise ConfigError(key, value, f"{default if default is not None else 0} for {field} {cls.__name__} "
                                          f"(it has no {key} argument)")
    for key, value in extra.items():
        if key in ("lr", "momentum", "weight_decay", "nesterov", "params", "rho", "lam"):
            raise ConfigError(f"{field}_args.{key}", value, f"a key other than {key} (set it as a trial key)")
        if key not in names and not open_kwargs:
            allowed = ", ".join(sorted(names - {"params", "lr", "momentum", "weight_decay", "nesterov"}))
            raise ConfigError(f"{field}_args.{key}", value, f"keyword arguments of {cls.__name__}: {allowed}")
        kwargs[key] = value
    return kwargs


def param_groups(model: torch.nn.Module, skip_norm_bias: bool) -> list[dict[str, Any]] | list[torch.nn.Parameter]:
    """All parameters (one group), or two groups: weights with decay, and biases and the
    affine parameters of normalisation layers without (``weight_decay`` 0 in that group)."""
    if not skip_norm_bias:
        return list(model.parameters())
    decay, plain = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (plain if name == "bias" or isinstance(module, _NORM_LAYERS) else decay).append(p)
    groups: list[dict[str, Any]] = [{"params": decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


def build_optimizer(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    rho: float | None = None,
    lam: float | str | None = None,
    model: torch.nn.Module | None = None,
    bn_policy: str = "clean",
    base_optimizer: str = "sgd",
    base_optimizer_args: Any = None,
    optimizer_args: Any = None,
    grad_clip: float | None = None,
    lam_every: int = 1,
) -> torch.optim.Optimizer:
    """The optimizer a config names. A registry name gives a ``TwoPassSAM`` over the base
    optimizer (sgd is rho = 0, so a training loop has one code path); an import path gives
    the plug-in, a two-pass one wrapped around the base optimizer. ``lam_every``: steps per
    tick of a lam schedule (1: per step, the paper's)."""
    lam = resolve_lam(name, lam)
    rho = resolve_rho(name, rho)
    base_cls = optimizer_class("base_optimizer", base_optimizer, BASE_OPTIMIZERS)
    kwargs = base_kwargs(base_cls, "base_optimizer", lr=lr, momentum=momentum, weight_decay=weight_decay,
                         nesterov=nesterov, extra=parse_args("base_optimizer_args", base_optimizer_args))
    extra = parse_args("optimizer_args", optimizer_args)
    if name in OPTIMIZERS:
        cls = load_object("optimizer", OPTIMIZERS[name].cls)
        unknown = sorted(set(extra) - set(cls.HYPER))
        if unknown:
            allowed = ", ".join(cls.HYPER) or "none"
            raise ConfigError(f"optimizer_args.{unknown[0]}", extra[unknown[0]], f"keys of optimizer {name}: {allowed}")
        return cls(params, base_cls, rho=rho, lam=lam, model=model, bn_policy=bn_policy, grad_clip=grad_clip,
                   lam_every=lam_every, **extra, **kwargs)
    cls = optimizer_class("optimizer", name, {})
    names, open_kwargs = _accepts(cls)
    if "base_optimizer" in names:  # a two-pass plug-in around the base optimizer
        if not (hasattr(cls, "first_step") and hasattr(cls, "second_step")):
            raise ConfigError("optimizer", name, "a torch optimizer, or a two-pass one with first_step and second_step")
        if rho is not None:
            if "rho" not in names and not open_kwargs:
                raise ConfigError("rho", rho, f"null for optimizer {name} (it has no rho argument)")
            extra = {"rho": rho, **extra}
        if issubclass(cls, TwoPassSAM):  # an unregistered sambench variant: lam 1, our BatchNorm policy
            extra = {"model": model, "bn_policy": bn_policy, "grad_clip": grad_clip, "lam_every": lam_every,
                     **extra}
        return cls(params, base_optimizer=base_cls, **extra, **kwargs)
    if rho is not None:
        raise ConfigError("rho", rho, f"null for optimizer {name} (a one-pass optimizer has no ascent)")
    return cls(params, **base_kwargs(cls, "optimizer", lr=lr, momentum=momentum, weight_decay=weight_decay,
                                     nesterov=nesterov, extra=extra))


def take_step(opt: torch.optim.Optimizer, closure: Callable[[], torch.Tensor],
              model: torch.nn.Module | None = None, bn_policy: str = "clean",
              grad_clip: float | None = None) -> tuple[torch.Tensor, int]:
    """One optimizer step on one batch: (loss at x, forward-backward passes it took).

    ``closure`` runs forward and backward at the current weights and returns the loss; it
    must not zero gradients. A plug-in two-pass optimizer gets the same BatchNorm policy for
    its second pass as sambench's own; for plug-ins, ``grad_clip`` clips the gradient of the
    pass the step descends with (sambench's own clip inside second_step)."""
    passes = 0

    def counted(clip: bool = False) -> torch.Tensor:
        nonlocal passes
        passes += 1
        loss = closure()
        if clip and grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], grad_clip)
        return loss

    if isinstance(opt, TwoPassSAM):
        return opt.step(counted), passes
    opt.zero_grad()
    if hasattr(opt, "first_step") and hasattr(opt, "second_step"):
        with torch.enable_grad():
            loss = counted()
        opt.first_step(zero_grad=True)
        with running_stats_kept(model, bn_policy), torch.enable_grad():
            counted(clip=True)
        opt.second_step()
        return loss, passes
    loss = opt.step(lambda: counted(clip=True))
    return loss, passes
