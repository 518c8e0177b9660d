"""The steps between two ``step`` events: their mean loss, throughput and share of time spent
waiting for data, summed on the device and read (one host sync) only when a step event is written."""

from __future__ import annotations

import time

import torch


class StepWindow:
    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self._reset()

    def _reset(self) -> None:
        self.loss.zero_()
        self.n_ok, self.t, self.wait, self.samples = 0, time.perf_counter(), 0.0, 0

    def add(self, loss: torch.Tensor, ok: bool, wait: float, samples: int) -> None:
        """One step: its loss (when applied), the seconds its batch was waited for, the samples
        it took on every rank together."""
        if ok:
            self.loss += loss
            self.n_ok += 1
        self.wait += wait
        self.samples += samples

    def take(self) -> dict[str, float]:
        """The step event's numbers for the window, which starts again."""
        dt = max(time.perf_counter() - self.t, 1e-9)
        out = {"loss": (self.loss / self.n_ok).item() if self.n_ok else float("nan"),
               "samples_per_s": round(self.samples / dt, 2), "data_wait": round(self.wait / dt, 4)}
        self._reset()
        return out
