"""Index + weight streams for a finite sum f = (1/n) sum_i f_i.

A sampler yields minibatch indices and per-sample weights; the minibatch loss is the
weighted mean ``mean_j w_j * loss_{i_j}``, so plain-mean samplers give weights of ones and
importance sampling gives ``1 / (n p_i)``, which keeps the gradient estimate unbiased.
Each sampler owns a CPU ``torch.Generator`` (the global RNG is never touched) and can be
saved and restored mid-epoch so a resumed run continues the identical stream.

``draw(k)`` returns the next k batches as ``[k, b]`` tensors without a per-step Python
loop; ``next_batch()`` is ``draw(1)`` for one batch, so both read the same stream.

``constants`` gives the sampler's Expected Residual constants (A, B), derived in
``harness.samplers.constants``; ``constants_caveat`` says, in one line, when those numbers
are not a proved bound for what was drawn (None when they are).
"paper-compat" reproduces the reference code: minibatches with replacement, importance
sampling without reweighting, and the constants that code plugs into its step sizes.

One file per sampler; this module holds the registry.
"""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError
from harness.samplers.base import Sampler
from harness.samplers.full import FullBatch
from harness.samplers.importance import IMPORTANCE_PROXY_NAMES, Importance
from harness.samplers.reshuffle import Reshuffle
from harness.samplers.tau_nice import TauNice
from harness.samplers.uniform import Uniform

__all__ = ["IMPORTANCE_PROXY_NAMES", "SAMPLERS", "Sampler", "build_sampler"]

SAMPLERS: dict[str, type[Sampler]] = {
    "full": FullBatch,
    "uniform": Uniform,
    "tau_nice": TauNice,
    "importance": Importance,
    "reshuffle": Reshuffle,
}


def build_sampler(
    name: str,
    n: int,
    batch_size: int,
    *,
    seed: int,
    paper_compat: bool = False,
    smoothness: np.ndarray | None = None,
    mix: float = 0.0,
    proxy: str = "loss",
) -> Sampler:
    """A sampler by registry name. ``smoothness``, ``mix`` and ``proxy`` only affect
    'importance': with ``smoothness`` p follows L_i, otherwise the named proxy that the
    caller refreshes via ``update_scores``."""
    if name not in SAMPLERS:
        raise ConfigError("sampler", name, ", ".join(SAMPLERS))
    if name == "importance":
        return Importance(
            n, batch_size, seed=seed, paper_compat=paper_compat, smoothness=smoothness, mix=mix, proxy=proxy
        )
    return SAMPLERS[name](n, batch_size, seed=seed, paper_compat=paper_compat)
