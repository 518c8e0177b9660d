"""Tests for trainer/data: synthetic faces, folder loaders, augmentation,
SegDataset / build_datasets, class frequencies and weights."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from trainer.data import (
    CLASS_NAMES, FLIP_PERM, IGNORE_INDEX, NUM_CLASSES, SMALL_CLASSES, Augment,
    CelebAMaskHQDataset, DataError, MiniChallengeDataset, SyntheticFaces,
    build_datasets, class_frequencies, class_weights_from_frequencies, measure_class_shares,
    to_tensor,
)
from trainer.data.augment import hflip
from trainer.core.classes import REAL_SHARES

torch.set_num_threads(1)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------ classes
def test_class_table():
    assert NUM_CLASSES == len(CLASS_NAMES) == 19 and IGNORE_INDEX == 255
    assert CLASS_NAMES[4] == "l_eye" and CLASS_NAMES[13] == "hair" and CLASS_NAMES[18] == "cloth"
    swapped = {c: FLIP_PERM[c] for c in range(NUM_CLASSES) if FLIP_PERM[c] != c}
    assert swapped == {4: 5, 5: 4, 6: 7, 7: 6, 8: 9, 9: 8}
    assert set(SMALL_CLASSES) == {2, 4, 5, 6, 7, 8, 9, 10, 11, 12}


def test_classes_import_without_torch_or_numpy():
    code = ("import sys, trainer.data, trainer.core.classes as c; "
            "assert c.NUM_CLASSES == 19; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- synthetic
def test_synthetic_deterministic_and_seeded():
    a = SyntheticFaces(5, 64, seed=3, split="train")
    b = SyntheticFaces(5, 64, seed=3, split="train", cache=True)
    for i in (0, 4):
        ia, ma = a.get_raw(i)
        ib, mb = b.get_raw(i)
        assert ia.dtype == np.uint8 and ia.shape == (64, 64, 3)
        assert ma.dtype == np.uint8 and ma.shape == (64, 64)
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
        assert np.array_equal(ia, a.get_raw(i)[0]) and np.array_equal(mb, b.get_raw(i)[1])
    assert not np.array_equal(a.get_raw(0)[1], a.get_raw(1)[1])
    other_seed = SyntheticFaces(5, 64, seed=4, split="train").get_raw(0)
    other_split = SyntheticFaces(5, 64, seed=3, split="val").get_raw(0)
    assert not np.array_equal(other_seed[0], a.get_raw(0)[0])
    assert not np.array_equal(other_split[1], a.get_raw(0)[1])
    with pytest.raises(IndexError):
        a.get_raw(5)


@pytest.fixture(scope="module")
def synth_stats():
    return measure_class_shares(SyntheticFaces(300, 128, seed=0, split="train"), 300)


def test_synthetic_class_shares_near_real(synth_stats):
    shares, presence = synth_stats["shares"], synth_stats["presence"]
    assert synth_stats["n"] == 300 and abs(sum(shares) - 1.0) < 1e-9
    for c in (0, 1, 13):                        # background, skin, hair
        assert abs(shares[c] - REAL_SHARES[c]) < 0.08, (CLASS_NAMES[c], shares[c])
    for c in SMALL_CLASSES:
        assert presence[c] > 0.8, (CLASS_NAMES[c], presence[c])
        # within a factor 2 of the real share (nose is 2.07% in the real data,
        # so a flat 0.05%..1.5% band would not fit it)
        assert REAL_SHARES[c] / 2 < shares[c] < REAL_SHARES[c] * 2, (CLASS_NAMES[c], shares[c])
        if c != 2:
            assert 0.0005 < shares[c] < 0.015, (CLASS_NAMES[c], shares[c])
    assert all(p > 0 for p in presence), "every class appears somewhere"
    for c in (3, 14, 16):                       # eye_g, hat, neck_l are rare
        assert presence[c] < 0.2, (CLASS_NAMES[c], presence[c])


def test_synthetic_left_is_on_image_right():
    ds = SyntheticFaces(20, 64, seed=1)
    xs = np.arange(64)
    for i in range(20):
        _, m = ds.get_raw(i)
        for left, right in ((4, 5), (6, 7)):
            assert xs[np.nonzero(m == left)[1]].mean() > xs[np.nonzero(m == right)[1]].mean()


# ------------------------------------------------------------------ augment
def test_flip_swaps_left_right_labels():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 4                             # l_eye on the image's right half
    mask[0, 0] = 8
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 4:] = 200
    fi, fm = hflip(image, mask)
    assert (fm[:, :4] == 5).all() and (fm[1:, 4:] == 0).all() and fm[0, 7] == 9
    assert (fi[:, :4] == 200).all() and (fi[:, 4:] == 0).all()

    aug = Augment(rotation=0, scale_range=(1, 1), hflip=True, color_jitter=0)
    results = [aug(image, mask, np.random.default_rng(s)) for s in range(20)]
    flipped = [m for _, m in results if m[0, 0] != 8]
    assert flipped and len(flipped) < 20       # flips about half the time
    assert all((m[:, :4] == 5).all() and not (m == 4).any() for m in flipped)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), labels=st.lists(
    st.sampled_from(list(range(NUM_CLASSES)) + [IGNORE_INDEX]), min_size=1, max_size=6))
def test_augment_keeps_mask_values_valid(seed, labels):
    rng = np.random.default_rng(seed)
    mask = rng.choice(np.array(labels, np.uint8), size=(24, 24))
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    aug = Augment(rotation=40, scale_range=(0.6, 1.4), hflip=True, color_jitter=0.5)
    out_i, out_m = aug(image, mask, np.random.default_rng(seed))
    allowed = {FLIP_PERM[v] if v < NUM_CLASSES else v for v in labels} | set(labels) | {0}
    assert out_m.dtype == np.uint8 and out_m.shape == mask.shape
    assert set(np.unique(out_m).tolist()) <= allowed
    assert out_i.dtype == np.uint8 and out_i.shape == image.shape


def test_augment_disabled_is_identity_and_params_take_effect():
    image, mask = SyntheticFaces(1, 32, seed=0).get_raw(0)
    aug = Augment(rotation=0, scale_range=(1.0, 1.0), hflip=False, color_jitter=0)
    i2, m2 = aug(image, mask, np.random.default_rng(0))
    assert np.array_equal(i2, image) and np.array_equal(m2, mask)
    aug.rotation = 30
    i3, m3 = aug(image, mask, np.random.default_rng(0))
    assert not np.array_equal(m3, mask)
    assert aug.params()["rotation"] == 30.0


# ------------------------------------------------------------ mini layout
PALETTE = [v for c in range(256) for v in ((c * 37) % 256, (c * 91) % 256, (c * 53) % 256)]


def write_pair(root, split, stem, mask, image=None, mask_mode="P"):
    h, w = mask.shape
    os.makedirs(root / split / "images", exist_ok=True)
    os.makedirs(root / split / "masks", exist_ok=True)
    if image is None:
        image = np.stack([mask * 10] * 3, -1).astype(np.uint8)
    Image.fromarray(image).save(root / split / "images" / f"{stem}.jpg", quality=95)
    m = Image.fromarray(mask.astype(np.uint8))
    if mask_mode == "P":
        m.putpalette(PALETTE)
    elif mask_mode == "RGB":
        m = m.convert("RGB")
    m.save(root / split / "masks" / f"{stem}.png")


def face_mask(size=32, k=0):
    m = np.zeros((size, size), np.uint8)
    m[4:28, 6:26] = 1
    m[10:13, 18:23] = 4                         # l_eye on the image's right
    m[10:13, 9:14] = 5
    m[0:5, :] = 13
    m[30:, 12:20] = 17
    m[20, 10 + k] = 12
    return m


@pytest.fixture
def mini_root(tmp_path):
    for i in range(3):
        write_pair(tmp_path, "train", f"img_{i}", face_mask(k=i))
    for i in range(2):
        write_pair(tmp_path, "val", f"v{i}", face_mask(k=i), mask_mode="L")
    return tmp_path


def test_mini_layout_loads_class_ids_exactly(mini_root):
    ds = MiniChallengeDataset(mini_root, "train")
    assert len(ds) == 3
    image, mask = ds.get_raw(1)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(mask, face_mask(k=1))   # P-mode palette indices, not colours
    assert len(MiniChallengeDataset(mini_root, "val")) == 2

    tr, va, desc = build_datasets(root=str(mini_root), format="auto", image_size=16,
                                  synthetic_train=5, synthetic_val=5, seed=0, augment=None)
    assert desc["synthetic"] is False and desc["kind"] == "mini"
    assert (desc["train_count"], desc["val_count"]) == (3, 2)
    x, y = tr[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert y.shape == (16, 16) and y.dtype == torch.uint8  # int64 only on the device
    assert set(y.unique().tolist()) <= set(np.unique(face_mask(k=0)).tolist())


def assert_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    for n in needles:
        assert n in msg, f"{n!r} not in message:\n{msg}"
    return msg


def test_error_missing_root_and_split(tmp_path):
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path / "nope", "train")
    assert_error(e, str(tmp_path / "nope"), "does not exist")
    write_pair(tmp_path, "train", "a", face_mask())
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "val")
    assert_error(e, str(tmp_path), "split folder missing", "train")
    with pytest.raises(DataError) as e:
        build_datasets(root=str(tmp_path / "nope"), format="auto", image_size=16,
                       synthetic_train=1, synthetic_val=1, seed=0, augment=None)
    assert_error(e, "does not exist")


def test_error_unknown_layout(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError) as e:
        build_datasets(root=str(tmp_path), format="auto", image_size=16,
                       synthetic_train=1, synthetic_val=1, seed=0, augment=None)
    assert_error(e, "unknown layout", "stuff/", str(tmp_path))


def test_error_unpaired_files_listed_up_to_ten(tmp_path):
    write_pair(tmp_path, "train", "a", face_mask())
    for i in range(12):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
            tmp_path / "train" / "images" / f"lonely{i:02d}.jpg")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "train" / "masks" / "orphan.png")
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train")
    msg = assert_error(e, "13 problem(s)", "image without mask: train/images/lonely00.jpg",
                       "masks/lonely00.png", "... and 3 more")
    assert "lonely11" not in msg and len(e.value.problems) == 13
    assert any("mask without image: train/masks/orphan.png" in p for p in e.value.problems)


def test_error_no_samples(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir()
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train")
    assert_error(e, "no samples")


def test_error_size_mismatch(tmp_path):
    write_pair(tmp_path, "train", "a", face_mask())
    write_pair(tmp_path, "train", "b", face_mask(), image=np.zeros((40, 32, 3), np.uint8))
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train")
    assert_error(e, "size mismatch", "b.jpg", "b.png", "32x40", "32x32")


def test_error_bad_mask_value(tmp_path):
    bad = face_mask()
    bad[0, 0] = 19
    bad[1, 1] = 200
    write_pair(tmp_path, "train", "a", face_mask())
    write_pair(tmp_path, "train", "bad", bad)
    ds = MiniChallengeDataset(tmp_path, "train")          # header check passes
    with pytest.raises(DataError) as e:
        ds.get_raw(1)
    assert_error(e, "bad.png", "[19, 200]")
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train", full_check=True)
    assert_error(e, "bad.png", "[19, 200]")
    ok = face_mask()
    ok[0, 0] = IGNORE_INDEX                               # 255 = ignore is allowed
    write_pair(tmp_path, "train", "bad", ok)
    assert MiniChallengeDataset(tmp_path, "train", full_check=True).get_raw(1)[1][0, 0] == 255


def test_error_corrupt_and_truncated_and_rgb_files(tmp_path):
    write_pair(tmp_path, "train", "a", face_mask())
    write_pair(tmp_path, "train", "b", face_mask())
    (tmp_path / "train" / "images" / "a.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train")
    assert_error(e, "unreadable", "a.jpg")

    write_pair(tmp_path, "train", "a", face_mask())
    path = tmp_path / "train" / "images" / "b.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])          # truncated: header still fine
    ds = MiniChallengeDataset(tmp_path, "train")
    with pytest.raises(DataError) as e:
        ds.get_raw(1)
    assert_error(e, "unreadable", "b.jpg")
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train", full_check=True)
    assert_error(e, "b.jpg")

    write_pair(tmp_path, "train", "b", face_mask(), mask_mode="RGB")
    with pytest.raises(DataError) as e:
        MiniChallengeDataset(tmp_path, "train")
    assert_error(e, "b.png", "mode RGB")


# --------------------------------------------------------- CelebAMask-HQ
def write_celeb(root, k, parts, size=32, img_size=64):
    (root / "CelebA-HQ-img").mkdir(parents=True, exist_ok=True)
    folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((img_size, img_size, 3), 40 * (k % 5), np.uint8)).save(
        root / "CelebA-HQ-img" / f"{k}.jpg")
    for name, (y0, y1, x0, x1) in parts.items():
        m = np.zeros((size, size), np.uint8)
        m[y0:y1, x0:x1] = 255
        Image.fromarray(m).save(folder / f"{k:05d}_{name}.png")


PARTS = {"skin": (4, 24, 4, 28), "hair": (0, 10, 0, 32), "hat": (0, 4, 8, 24),
         "neck": (22, 32, 10, 22), "cloth": (28, 32, 0, 32), "l_eye": (12, 14, 18, 22)}


def test_celebamask_merge_order_resize_and_split(tmp_path):
    for k in (0, 1, 2, 2001):
        write_celeb(tmp_path, k, PARTS)
    val = CelebAMaskHQDataset(tmp_path, "val", val_fraction=0.5)
    train = CelebAMaskHQDataset(tmp_path, "train", val_fraction=0.5)
    keys = sorted(s[0] for s in train.samples + val.samples)
    assert keys == [0, 1, 2, 2001] and len(train) == len(val) == 2
    image, mask = train.get_raw(0)
    assert image.shape == (32, 32, 3) and mask.shape == (32, 32)   # image resized to masks
    assert mask[6, 6] == 13            # hair over skin
    assert mask[2, 12] == 14           # hat over hair
    assert mask[2, 2] == 13 and mask[15, 6] == 1
    assert mask[30, 15] == 18          # cloth over neck
    assert mask[25, 15] == 17          # neck over skin (painted later)
    assert mask[13, 19] == 4 and mask[30, 2] == 18 and mask[20, 30] == 0


def test_celebamask_errors(tmp_path):
    write_celeb(tmp_path, 0, PARTS)
    write_celeb(tmp_path, 1, {"skin": (0, 5, 0, 5), "beard": (0, 5, 0, 5)})
    (tmp_path / "CelebA-HQ-img" / "7.jpg").write_bytes(b"x")
    m = np.zeros((32, 32), np.uint8)
    Image.fromarray(m).save(tmp_path / "CelebAMask-HQ-mask-anno" / "0" / "00009_skin.png")
    with pytest.raises(DataError) as e:
        CelebAMaskHQDataset(tmp_path, "train")
    assert_error(e, "unknown part 'beard'", "00001_beard.png", "image without part masks",
                 "CelebA-HQ-img/7.jpg", "part masks without image", "00009_*.png")
    with pytest.raises(DataError) as e:
        CelebAMaskHQDataset(tmp_path / "missing", "train")
    assert_error(e, "does not exist")


# ------------------------------------------------------ frequencies/weights
class CountingSource:
    def __init__(self, masks, key):
        self.masks, self.cache_key, self.calls = masks, key, 0

    def __len__(self):
        return len(self.masks)

    def get_raw(self, i):
        self.calls += 1
        return np.zeros(self.masks[i].shape + (3,), np.uint8), self.masks[i]


def test_class_frequencies_exact_and_cached(tmp_path):
    m1 = np.zeros((4, 4), np.uint8)
    m1[0] = 13
    m1[1, :2] = 4
    m2 = np.full((4, 4), 1, np.uint8)
    m2[3] = IGNORE_INDEX                     # ignored pixels are not counted
    src = CountingSource([m1, m2], "src-A")
    cache = tmp_path / "sub" / "freqs.json"
    f = class_frequencies(src, str(cache))
    assert len(f) == NUM_CLASSES and abs(sum(f) - 1) < 1e-12
    assert f[13] == pytest.approx(4 / 28) and f[4] == pytest.approx(2 / 28)
    assert f[1] == pytest.approx(12 / 28) and f[0] == pytest.approx(10 / 28)
    assert src.calls == 2
    assert class_frequencies(src, str(cache)) == f and src.calls == 2    # from the cache
    other = CountingSource([m2], "src-B")
    f2 = class_frequencies(other, str(cache))
    assert other.calls == 1 and f2[1] == 1.0 and f2 != f
    assert set(json.loads(cache.read_text())) == {"src-A", "src-B"}
    cache.write_text("{not json")
    with pytest.warns(UserWarning):
        assert class_frequencies(src, str(cache)) == f
    assert src.calls == 4


def test_class_weights_from_frequencies():
    w = class_weights_from_frequencies(REAL_SHARES)
    assert len(w) == NUM_CLASSES and all(np.isfinite(w))
    assert w[4] > w[2] > w[13] and max(w) <= 10.0 and min(w) >= 0.1
    assert w[16] == 10.0                                  # neck_l clipped
    unclipped = [i for i in range(NUM_CLASSES) if 0.1 < w[i] < 10.0]
    assert len(unclipped) >= 17
    freqs = [0.5, 0.3, 0.2] + [0.0] * 16
    w2 = class_weights_from_frequencies(freqs)
    assert w2[3:] == [1.0] * 16
    assert sum(f * x for f, x in zip(freqs, w2)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        class_weights_from_frequencies([float("nan")] + [0.1] * 18)


# ------------------------------------------------------ SegDataset, loader
def test_segdataset_tensors_epochs_and_workers():
    aug = Augment(rotation=25, scale_range=(0.8, 1.2), hflip=True, color_jitter=0.3)
    train, val, desc = build_datasets(root=None, format="auto", image_size=32,
                                      synthetic_train=4, synthetic_val=2, seed=7, augment=aug)
    assert desc["synthetic"] is True and desc["kind"] == "synthetic"
    assert (desc["train_count"], desc["val_count"], desc["image_size"]) == (4, 2, 32)
    assert val.augment is None and len(val) == 2

    x0, y0 = train[0]
    assert x0.shape == (3, 32, 32) and x0.dtype == torch.float32 and y0.dtype == torch.uint8  # int64 on the device
    assert torch.equal(train[0][0], x0)                   # deterministic within an epoch
    train.set_epoch(1)
    x1, _ = train[0]
    assert not torch.equal(x1, x0)                        # new epoch, new augmentation
    train.set_epoch(0)
    assert torch.equal(train[0][0], x0)

    freqs = class_frequencies(train, None)                # unwraps to the un-augmented source
    assert freqs == class_frequencies(train.source, None) == measure_class_shares(train.source)["shares"]

    loader = torch.utils.data.DataLoader(train, batch_size=2, num_workers=2,
                                         persistent_workers=False)
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (2, 3, 32, 32)
    assert torch.equal(batches[0][0][0], x0)              # workers = main process result

    aug.rotation, aug.scale_range, aug.hflip, aug.color_jitter = 0, (1, 1), False, 0.0
    train.set_epoch(1)
    xb, yb = next(iter(loader))                           # fresh workers see the change
    img, mask = train.source.get_raw(0)
    assert torch.equal(xb[0], to_tensor(img))
    assert torch.equal(yb[0], torch.from_numpy(mask))
