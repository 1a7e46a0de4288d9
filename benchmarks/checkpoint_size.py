"""How much disk a running trial's Tune checkpoints take, per model.

Builds the real trial (harness.trial.NetTrial) on CPU with FakeData of the dataset's shape,
takes one SAM step so that the optimizer state (momentum buffers) exists, and measures
``torch.save(trial.state_dict())``: exactly what ``state.pt`` of a checkpoint holds. Tune
keeps 2 checkpoints of a running trial (sweep.py: ``num_to_keep=2``); sambench deletes a
trial's checkpoints once its Parquet rows are committed, so a sweep's checkpoint disk is
about 2 x this size x the number of trials running at once.

    python benchmarks/checkpoint_size.py                     # WRN-28-10 and PreActResNet-18
    python benchmarks/checkpoint_size.py --model preact_resnet18
"""

from __future__ import annotations

import argparse
import io
import time

import torch

from harness.config import TrialConfig
from harness.trial import NetTrial

CHECKPOINTS_KEPT = 2  # CheckpointConfig(num_to_keep=2) in harness/sweep.py


def _size(obj: object) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.tell()


def measure(model: str, dataset: str) -> dict[str, float]:
    cfg = TrialConfig.from_dict(dict(
        dataset=dataset, fake_data=True, model=model, optimizer="sam", rho=0.1, lr=0.1, momentum=0.9,
        weight_decay=5e-4, batch_size=2, train_subset=2, test_subset=2, epochs=1, device="cpu"))
    trial = NetTrial(cfg)
    start = time.perf_counter()
    for _ in trial.records():  # one step: momentum buffers now exist
        pass
    state = trial.state_dict()
    params = sum(p.numel() for p in trial.model.parameters())
    return {"params_M": params / 1e6, "model_MB": _size(state["model"]) / 1e6,
            "optimizer_MB": _size(state["optimizer"]) / 1e6, "checkpoint_MB": _size(state) / 1e6,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="model name (repeatable); default wrn and preact_resnet18")
    parser.add_argument("--dataset", default="cifar10")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{'model':<16} {'params':>8} {'model':>9} {'optimizer':>10} {'state.pt':>9} {'per running trial':>18}")
    for model in args.model or ["wrn", "preact_resnet18"]:
        m = measure(model, args.dataset)
        print(f"{model:<16} {m['params_M']:>7.2f}M {m['model_MB']:>7.1f}MB {m['optimizer_MB']:>8.1f}MB "
              f"{m['checkpoint_MB']:>7.1f}MB {CHECKPOINTS_KEPT * m['checkpoint_MB']:>16.1f}MB")


if __name__ == "__main__":
    main()
