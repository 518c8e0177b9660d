"""Fixtures of the cockpit's Pilot tests (tests/app)."""

from __future__ import annotations

import pytest
from fake_trainer import FakeTrainers


@pytest.fixture
def fake(tmp_path):
    """Start fake trainers (threads) in tmp_path: ``fake(name="alpha", **FakeTrainer options)``; 30 epochs,
    3 of history, 0.3 s a step unless told; all stopped after the test. A module may change the
    defaults in a fixture of its own (``fake.defaults.update(...)``)."""
    trainers = FakeTrainers(tmp_path, epochs=30, history=3, step_delay=0.3)
    yield trainers
    trainers.stop()
