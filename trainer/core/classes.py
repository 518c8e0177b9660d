"""Class table for CelebAMask-HQ face parsing.

Pure Python on purpose: the UI process imports this for class names and must
never pull in torch (or numpy).

Left/right convention: ``l_*`` is the SUBJECT's left, which appears on the
IMAGE's right (larger x). A horizontal flip therefore swaps 4<->5, 6<->7, 8<->9.
"""

NUM_CLASSES = 19
IGNORE_INDEX = 255

CLASS_NAMES = (
    "background",  # 0
    "skin",        # 1
    "nose",        # 2
    "eye_g",       # 3
    "l_eye",       # 4
    "r_eye",       # 5
    "l_brow",      # 6
    "r_brow",      # 7
    "l_ear",       # 8
    "r_ear",       # 9
    "mouth",       # 10
    "u_lip",       # 11
    "l_lip",       # 12
    "hair",        # 13
    "hat",         # 14
    "ear_r",       # 15
    "neck_l",      # 16
    "neck",        # 17
    "cloth",       # 18
)

CLASS_IDS = {name: i for i, name in enumerate(CLASS_NAMES)}

# FLIP_PERM[c] is the label of a pixel of class c after a horizontal flip.
FLIP_PERM = (0, 1, 2, 3, 5, 4, 7, 6, 9, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18)

# Eyes, brows, lips, ears, nose, mouth: the small parts that weigh as much as
# hair in the per-image F-measure.
SMALL_CLASSES = (2, 4, 5, 6, 7, 8, 9, 10, 11, 12)

# Average pixel shares measured on the 1000 mini-challenge training masks
# (shared/domain.md), as fractions. Sum is ~1.0.
REAL_SHARES = (
    0.288,    # background
    0.255,    # skin
    0.0207,   # nose
    0.0033,   # eye_g
    0.0022,   # l_eye
    0.0022,   # r_eye
    0.0042,   # l_brow
    0.0042,   # r_brow
    0.0048,   # l_ear
    0.0039,   # r_ear
    0.0029,   # mouth
    0.0041,   # u_lip
    0.0067,   # l_lip
    0.310,    # hair
    0.0111,   # hat
    0.0020,   # ear_r
    0.00009,  # neck_l
    0.0408,   # neck
    0.0341,   # cloth
)

assert len(CLASS_NAMES) == NUM_CLASSES == len(FLIP_PERM) == len(REAL_SHARES)
assert all(FLIP_PERM[FLIP_PERM[c]] == c for c in range(NUM_CLASSES))

__all__ = [
    "NUM_CLASSES", "IGNORE_INDEX", "CLASS_NAMES", "CLASS_IDS", "FLIP_PERM",
    "SMALL_CLASSES", "REAL_SHARES",
]

# One colour per class (RGB) for masks drawn as pictures (previews, reports): the CelebAMask-HQ
# colour map, in the order of CLASS_NAMES.
CLASS_COLOURS = (
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255),
    (255, 204, 204), (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204),
    (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0),
)
