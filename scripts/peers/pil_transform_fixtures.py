#!/usr/bin/env python3
"""Writes the PIL reference outputs that runtime/data/tests/pil.rs compares dyce's eval
transform with: torchvision's Resize + CenterCrop on PIL images, done here with PIL alone (the
same calls torchvision makes), on synthetic PNG and JPEG inputs.

Run with:  python3 scripts/peers/pil_transform_fixtures.py runtime/data/tests/fixtures/pil
(needs pillow; the outputs are committed, so the Rust test needs no Python).
"""

import json
import os
import sys

import numpy as np
from PIL import Image

CASES = [
    # (name, size (w, h), mode, format)
    ("rgb_300x200", (300, 200), "RGB", "png"),
    ("rgb_97x61", (97, 61), "RGB", "jpeg"),
    ("rgba_64x90", (64, 90), "RGBA", "png"),
    ("gray_20x15", (20, 15), "L", "png"),
]
TRANSFORMS = [
    # (name, resize of the shorter side or None for exact, crop (h, w), PIL filter, channels)
    ("bilinear_40_32", 40, (32, 32), Image.BILINEAR, 3),
    ("bicubic_40_32", 40, (32, 32), Image.BICUBIC, 3),
    ("bilinear_exact_28", None, (28, 28), Image.BILINEAR, 1),
    ("bicubic_24_30x20", 24, (30, 20), Image.BICUBIC, 1),
]


def source(size, mode, seed):
    w, h = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) * 7) % 256], -1)
    noisy = np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(noisy, "RGB")
    if mode == "RGBA":
        a = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
        img = img.copy()
        img.putalpha(a)
    elif mode == "L":
        img = img.convert("L")
    return img


def torchvision_eval(img, resize, crop, resample):
    ch, cw = crop
    if resize is None:
        return img.resize((cw, ch), resample)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(resize * long / short)
    size = (resize, new_long) if w <= h else (new_long, resize)
    img = img.resize(size, resample)
    w, h = img.size
    if w < cw or h < ch:  # torchvision pads with zeros, then crops
        pl, pt = (cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0
        pr, pb = (cw - w + 1) // 2 if cw > w else 0, (ch - h + 1) // 2 if ch > h else 0
        canvas = Image.new(img.mode, (w + pl + pr, h + pt + pb), 0)
        canvas.paste(img, (pl, pt))
        img = canvas
        w, h = img.size
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


def main(out):
    os.makedirs(out, exist_ok=True)
    index = []
    for i, (name, size, mode, fmt) in enumerate(CASES):
        img = source(size, mode, i)
        path = os.path.join(out, f"{name}.{'jpg' if fmt == 'jpeg' else 'png'}")
        img.save(path, fmt.upper(), quality=90) if fmt == "jpeg" else img.save(path)
        # Decode what was written (JPEG is lossy) the way torchvision's loader does.
        with Image.open(path) as f:
            loaded = f.convert("RGB")
        for tname, resize, crop, resample, channels in TRANSFORMS:
            src = loaded if channels == 3 else loaded.convert("L")
            res = np.asarray(torchvision_eval(src, resize, crop, resample))
            planar = res.transpose(2, 0, 1) if res.ndim == 3 else res[None]
            planar.astype(np.uint8).tofile(os.path.join(out, f"{name}.{tname}.bin"))
            index.append({"image": os.path.basename(path), "transform": tname, "resize": resize,
                          "crop": list(crop), "interpolation": "bilinear" if resample == Image.BILINEAR else "bicubic",
                          "channels": channels, "output": f"{name}.{tname}.bin"})
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"pillow": Image.__version__, "cases": index}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
