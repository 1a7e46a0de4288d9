"""The Hessian of the mean training loss over a fixed subset, as a linear operator.

Products are computed on the operator's own leaf tensors (the trainable parameters,
detached; upcast to float32 when they are narrower), through ``torch.func.functional_call``,
so the model's parameters, their ``.grad`` and their ``requires_grad`` are never touched,
and autocast is switched off inside, so a bf16/fp16 training setup still gets float32 (or
wider) products.

Three ways to compute a product (``hvp``):

- ``"graph"``: build the first-order graph of the whole subset once (``create_graph``)
  and differentiate it again per product with ``retain_graph``: one backward pass of the
  gradient graph per product, no forward pass. Holds that graph between products.
- ``"recompute"``: per chunk of ``batch_size`` examples, forward, first backward with
  ``create_graph``, second backward; memory is one chunk's graph.
- ``"jvp"``: forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad`` per chunk.
- ``"auto"`` (default): ``"graph"`` when the subset's first-order graph, estimated from
  a probe of a few examples, fits ``memory_budget``; otherwise ``"recompute"`` in chunks
  that fit it.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

LossFn = Callable[[Tensor, Tensor], Tensor]
HVP_MODES = ("auto", "graph", "recompute", "jvp")
PROBE_SAMPLES = 16  # examples in the probe that sizes the first-order graph


class _LossOf(nn.Module):
    """model + loss as one module, so ``functional_call`` also swaps the parameters a
    loss closure reads (an L2 penalty on ``model.weight``), not only those of forward."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(self.model(x), y)


class HessianOperator:
    """The Hessian of the mean loss over ``inputs``/``targets`` as a symmetric operator on
    flat vectors of all trainable parameters (``model.parameters()`` order).

    ``loss_fn(outputs, targets)`` must return the mean over its chunk; chunk products are
    weighted by their share of the subset, so the operator is exactly the Hessian of the
    subset mean (a data-independent term, e.g. an L2 penalty, counts once). Products run in
    ``dtype``: the parameters' dtype, at least float32. ``memory_budget`` (bytes; default
    half the free memory of a CUDA device, else 2 GiB) bounds the first-order graph.
    Use it as a context manager (or call ``release``) to drop a kept graph early.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *,
                 batch_size: int | None = None, hvp: str = "auto", memory_budget: int | None = None):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if hvp not in HVP_MODES:
            raise ValueError(f"hvp must be one of {', '.join(HVP_MODES)}, got {hvp!r}")
        if len(inputs) != len(targets) or len(inputs) == 0:
            raise ValueError(f"need equal, non-zero numbers of inputs and targets, got {len(inputs)} and {len(targets)}")
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no parameters with requires_grad")
        if len({(p.dtype, p.device) for _, p in named}) != 1:
            raise ValueError("all trainable parameters must share one dtype and device")
        self.model, self.inputs, self.targets = model, inputs, targets
        self._loss_of = _LossOf(model, loss_fn)
        self.device = named[0][1].device
        self.dtype = torch.promote_types(named[0][1].dtype, torch.float32)
        self.names = [f"model.{name}" for name, _ in named]
        # Detached leaves: same storage as the parameters when no cast is needed.
        self.leaves = [p.detach().to(self.dtype).requires_grad_(True) for _, p in named]
        self.sizes = [p.numel() for p in self.leaves]
        self.dim = sum(self.sizes)
        self.buffers = {f"model.{name}": b.to(self.dtype) for name, b in model.named_buffers()
                        if b.is_floating_point() and b.dtype != torch.promote_types(b.dtype, self.dtype)}
        self.hvps = 0
        self.memory_budget = _default_budget(self.device) if memory_budget is None else memory_budget
        n = len(inputs)
        self.graph_bytes: float | None = None  # estimated bytes of the subset's first-order graph
        if hvp == "auto":
            self.graph_bytes = self._probe_graph_bytes() * n
            fits = self.graph_bytes <= self.memory_budget
            hvp = "graph" if fits and (batch_size is None or batch_size >= n) else "recompute"
            if batch_size is None:
                batch_size = n if fits else max(1, int(self.memory_budget * n // self.graph_bytes))
        self.mode = hvp
        self.batch_size = n if hvp == "graph" or batch_size is None else min(batch_size, n)
        self._graph: tuple[list[int], list[Tensor]] | None = None

    # -- the product --------------------------------------------------------------------
    def matvec(self, v: Tensor) -> Tensor:
        """H @ v for a flat vector v of length ``dim``; returns a detached flat vector in
        ``dtype`` (v is cast to ``dtype`` first)."""
        if v.shape != (self.dim,):
            raise ValueError(f"expected a flat vector of length {self.dim}, got shape {tuple(v.shape)}")
        v = v.detach().to(device=self.device, dtype=self.dtype)
        pieces = [piece.view_as(p) for piece, p in zip(v.split(self.sizes), self.leaves)]
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        n = len(self.inputs)
        with self._measuring():
            if self.mode == "graph":
                out = self._graph_hvp(pieces)
            else:
                chunk_hvp = self._jvp_hvp if self.mode == "jvp" else self._recompute_hvp
                for start in range(0, n, self.batch_size):
                    x, y = self._chunk(start, start + self.batch_size)
                    out.add_(chunk_hvp(x, y, pieces), alpha=len(x) / n)
        self.hvps += 1
        return out

    def release(self) -> None:
        """Drop the kept first-order graph (the ``"graph"`` mode rebuilds it on demand)."""
        self._graph = None

    def __enter__(self) -> HessianOperator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- internals ----------------------------------------------------------------------
    @contextmanager
    def _measuring(self) -> Iterator[None]:
        """Eval mode (BatchNorm on running statistics, no dropout), autocast and TF32 off,
        grad on; every module's mode and the TF32 switches are put back afterwards."""
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        try:
            # TF32 (10-bit mantissa) is not float32: off for cuBLAS and cuDNN while we run.
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            with torch.autocast(self.device.type, enabled=False), torch.enable_grad():
                yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
            for module, training in modes:
                module.training = training

    def _chunk(self, start: int, stop: int, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        x = self.inputs[start:stop].to(self.device, non_blocking=True)
        if x.is_floating_point():
            x = x.to(dtype or self.dtype)
        return x, self.targets[start:stop].to(self.device, non_blocking=True)

    def matvec_float64(self, v: Tensor) -> Tensor:
        """H @ v with everything in float64 (parameters, buffers and inputs cast), one
        product counted: the final check of a lower-precision operator. Recomputed per
        chunk of half ``batch_size`` examples (a float64 graph is twice a float32 one),
        after dropping a kept graph."""
        if self.dtype == torch.float64:
            return self.matvec(v)
        self.release()
        leaves = [leaf.detach().double().requires_grad_(True) for leaf in self.leaves]
        buffers = {f"model.{name}": b.double() for name, b in self.model.named_buffers() if b.is_floating_point()}
        v = v.detach().to(device=self.device, dtype=torch.float64)
        pieces = [piece.view_as(p) for piece, p in zip(v.split(self.sizes), leaves)]
        out = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        n, step = len(self.inputs), max(1, self.batch_size // 2)
        with self._measuring():
            for start in range(0, n, step):
                x, y = self._chunk(start, start + step, torch.float64)
                first = self._first_order(x, y, leaves, buffers)
                out.add_(self._second_order(first, pieces, leaves, retain=False), alpha=len(x) / n)
        self.hvps += 1
        return out

    def _loss(self, leaves: list[Tensor] | tuple[Tensor, ...], x: Tensor, y: Tensor,
              buffers: dict[str, Tensor] | None = None) -> Tensor:
        state = {**dict(zip(self.names, leaves)), **(self.buffers if buffers is None else buffers)}
        return functional_call(self._loss_of, state, (x, y))

    def _first_order(self, x: Tensor, y: Tensor, leaves: list[Tensor] | None = None,
                     buffers: dict[str, Tensor] | None = None) -> tuple[list[int], list[Tensor]]:
        """The gradient with its graph kept (create_graph), as (indices, gradients) of the
        leaves it depends on to second order; empty when the loss is linear in all of them."""
        leaves = self.leaves if leaves is None else leaves
        grads = torch.autograd.grad(self._loss(leaves, x, y, buffers), leaves, create_graph=True, allow_unused=True)
        used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        return used, [grads[i] for i in used]

    def _second_order(self, first: tuple[list[int], list[Tensor]], pieces: list[Tensor], leaves: list[Tensor],
                      retain: bool) -> Tensor:
        used, grads = first
        if not used:
            return torch.zeros(self.dim, dtype=leaves[0].dtype, device=self.device)
        hv = torch.autograd.grad(grads, leaves, grad_outputs=[pieces[i] for i in used],
                                 retain_graph=retain, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if h is None else h).reshape(-1) for h, p in zip(hv, leaves)])

    def _recompute_hvp(self, x: Tensor, y: Tensor, pieces: list[Tensor]) -> Tensor:
        # autograd.grad never writes .grad, and without retain_graph the second call frees
        # the chunk's graph, so nothing outlives this call.
        return self._second_order(self._first_order(x, y), pieces, self.leaves, retain=False)

    def _graph_hvp(self, pieces: list[Tensor]) -> Tensor:
        if self._graph is None:
            self._graph = self._first_order(*self._chunk(0, len(self.inputs)))
        return self._second_order(self._graph, pieces, self.leaves, retain=True)

    def _jvp_hvp(self, x: Tensor, y: Tensor, pieces: list[Tensor]) -> Tensor:
        primals = tuple(leaf.detach() for leaf in self.leaves)
        _, hv = jvp(grad(lambda ps: self._loss(ps, x, y)), (primals,), (tuple(pieces),))
        return torch.cat([h.reshape(-1) for h in hv])

    def _probe_graph_bytes(self) -> float:
        """Bytes per example of the first-order graph, from the tensors autograd saves for
        it on a probe of a few examples (storages already resident, the parameters and the
        inputs, excluded; the per-probe constant part is counted as per-example, so this
        errs on the large side)."""
        resident = {t.untyped_storage().data_ptr() for t in [*self.leaves, *self.buffers.values()]}
        saved: dict[int, int] = {}

        def pack(t: Tensor) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in resident:
                saved[storage.data_ptr()] = storage.nbytes()
            return t

        x, y = self._chunk(0, min(PROBE_SAMPLES, len(self.inputs)))
        resident.add(x.untyped_storage().data_ptr())
        with self._measuring(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, grads = self._first_order(x, y)
        total = sum(saved.values()) + sum(g.numel() * g.element_size() for g in grads)
        return total / len(x)


def _default_budget(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 2
    return 2 * 2**30


def normal_vector(op: HessianOperator, generator: torch.Generator) -> Tensor:
    """A float64 standard normal vector drawn on the generator's device, moved to the op's."""
    z = torch.randn(op.dim, generator=generator, device=generator.device, dtype=torch.float64)
    return z.to(op.device)


def unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v)


def clock(op: HessianOperator) -> float:
    """perf_counter after the device's queued work is done, so GPU time is counted."""
    if op.device.type == "cuda":
        torch.cuda.synchronize(op.device)
    return time.perf_counter()


__all__ = ["HVP_MODES", "HessianOperator", "LossFn", "clock", "normal_vector", "unit"]
