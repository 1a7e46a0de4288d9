"""SAM, USAM and Unified SAM: the ascent direction is the gradient itself.

e = rho (1 - lam + lam / (||g|| + 1e-12)) g. lam = 1 is SAM (Foret et al., ICLR 2021),
lam = 0 USAM (rho g, not clipped to the rho-ball), 0 < lam < 1 and the schedules "1/t",
"1-1/t" Unified SAM (Oikonomou & Loizou, ICLR 2025).
"""

from __future__ import annotations

from harness.optim.base import TwoPassSAM


class UnifiedSAM(TwoPassSAM):
    """Unified SAM around a base optimizer (SGD by default); see ``TwoPassSAM`` for the API.

    torch's LR schedulers watch step(): with the two-pass API they warn once, harmlessly,
    that lr_scheduler.step() came before optimizer.step().
    """
