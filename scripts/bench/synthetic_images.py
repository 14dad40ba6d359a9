#!/usr/bin/env python3
"""Writes an ImageFolder of synthetic 3-channel JPEGs of mixed sizes (gradients and noise, a
different palette per class): input for measuring `dyce calibrate` on an ImageNet-sized model
(docs/benchmarks.md). The images carry no meaning; their sizes and formats are realistic.

python3 scripts/bench/synthetic_images.py OUT --classes 10 --per-class 40
"""
import argparse
import os
import random

from PIL import Image


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    sizes = [(500, 375), (375, 500), (640, 480), (256, 256), (800, 600), (333, 500)]
    n = 0
    for c in range(a.classes):
        d = os.path.join(a.out, f"class{c:03d}")
        os.makedirs(d, exist_ok=True)
        base = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        for i in range(a.per_class):
            w, h = rng.choice(sizes)
            img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
            noise = Image.effect_noise((w, h), 40).convert("RGB")
            tint = Image.new("RGB", (w, h), base)
            img = Image.blend(Image.blend(img, tint, 0.5), noise, 0.25)
            img.save(os.path.join(d, f"{i:04d}.jpg"), quality=rng.choice([75, 85, 95]))
            n += 1
    print(f"{n} JPEG files under {a.out}")


if __name__ == "__main__":
    main()
