"""trainer.previews on its own: which images are chosen, and how many epochs are kept."""

from __future__ import annotations

import json

import torch

import trainer.previews as previews
from trainer.core.classes import SMALL_CLASSES
from trainer.data.dataset import build_datasets
from trainer.model import build_model


def _val(n: int = 10):
    return build_datasets(root=None, image_size=32, synthetic_train=4, synthetic_val=n)[1]


def test_the_images_with_the_most_small_parts_are_chosen_deterministically():
    val = _val()
    counts = [len({int(c) for c in torch.unique(val[i][1]).tolist()} & set(SMALL_CLASSES)) for i in range(len(val))]
    chosen = previews.choose(val, 4)
    assert chosen == previews.choose(_val(), 4)  # the same split, the same images (a resume)
    assert sorted(counts[i] for i, _ in chosen) == sorted(counts)[-4:]
    assert all(len(present) == counts[i] for i, present in chosen)


def test_the_first_and_the_latest_epochs_are_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(previews, "KEEP", 2)
    p = previews.Previews(tmp_path, _val(6), n=2)
    model = build_model(attention="none", width=8, dropout=0.0)
    for e in range(1, 6):
        p.write(e, model, torch.device("cpu"))
    assert sorted(x.name for x in (tmp_path / "previews").iterdir()) == [
        "epoch_0001.png", "epoch_0004.png", "epoch_0005.png", "index.json"]
    index = json.loads((tmp_path / "previews" / "index.json").read_text())
    assert index["epochs"] == [1, 4, 5] and index["latest"] == 5 and len(index["rows"]) == 2
    assert model.training  # put back as it was
