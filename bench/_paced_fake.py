"""The fake trainer (tests/app/fake_trainer.py) at an exact step-event rate, for bench/tui_load.py.

    python bench/_paced_fake.py RUN_DIR [--rate 20] [--steps-per-epoch 200]

FakeTrainer sleeps in 20 ms slices, so ``--step-delay`` gives only coarse rates; this subclass
keeps an absolute schedule (answering control lines while it waits), so a run writes ``--rate``
step events per second and an epoch event every ``--steps-per-epoch`` steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "app"))

from fake_trainer import FakeTrainer  # noqa: E402


class PacedFake(FakeTrainer):
    _next: float | None = None

    def _sleep(self, seconds: float) -> None:
        now = time.monotonic()
        self._next = (self._next or now) + seconds
        while True:
            self.poll_control()
            left = self._next - time.monotonic()
            if left <= 0 or self.stopped or self._quit.is_set():
                return
            time.sleep(min(left, 0.02))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--rate", type=float, default=20.0)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    a = p.parse_args()
    PacedFake(a.run_dir, epochs=1_000_000, steps_per_epoch=a.steps_per_epoch, step_delay=1.0 / a.rate).run()


if __name__ == "__main__":
    main()
