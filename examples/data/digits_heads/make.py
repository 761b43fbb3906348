"""Builds digits_heads.npz from the shipped digits (../digits-*-ubyte, see ../README.md) for
examples/digits_two_heads.fm: one .npz with the images and one target per output.

    image   u8[1797, 8, 8]   the IDX images as they are (0..255)
    digit   i32[1797]        the class label 0..9
    center  f32[1797, 2]     the centre of mass of the ink, (row, column) in pixels 0..7

Run from this directory with numpy installed: `python make.py`. Deterministic (no randomness);
the sha256 of the output is printed and recorded in README.md.
"""
import hashlib
import numpy as np


def idx(path):
    data = open(path, "rb").read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


images = idx("../digits-images-idx3-ubyte")
labels = idx("../digits-labels-idx1-ubyte")
ink = images.astype(np.float64)
mass = ink.sum(axis=(1, 2))
rows = (ink.sum(axis=2) * np.arange(8)).sum(axis=1) / mass
cols = (ink.sum(axis=1) * np.arange(8)).sum(axis=1) / mass
center = np.stack([rows, cols], axis=1).astype(np.float32)
np.savez_compressed(
    "digits_heads.npz", image=images, digit=labels.astype(np.int32), center=center
)
print(hashlib.sha256(open("digits_heads.npz", "rb").read()).hexdigest())
print("center mean", center.mean(axis=0), "std", center.std(axis=0))
print("mae of predicting the training mean on the last 360:",
      np.abs(center[1437:] - center[:1437].mean(axis=0)).mean())
