"""Keras 3's F1Score on fixed predictions: the reference for fm's `f1` metric
(runtime/tests/metrics_and_schedules.rs, `f1_matches_keras`). Run with Keras 3 installed:
`python gen.py`; it prints the values that test asserts (Keras 3.15.1 printed the ones there).

fm's `f1` is `F1Score(average="macro")`: the largest score decides the class of a softmax
output (`threshold=None`), and a one-unit sigmoid output is decided at 0.5.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import numpy as np

# Multi-class: 8 samples, 3 classes, integer labels (as one-hot for Keras), two batches.
scores = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.3, 0.4],
        [0.5, 0.4, 0.1],
        [0.2, 0.2, 0.6],
        [0.1, 0.6, 0.3],
        [0.4, 0.5, 0.1],
        [0.3, 0.1, 0.6],
    ],
    np.float32,
)
labels = np.array([0, 1, 2, 1, 2, 0, 1, 2])
m = keras.metrics.F1Score(average="macro")
onehot = np.eye(3, dtype=np.float32)[labels]
m.update_state(onehot[:5], scores[:5])
m.update_state(onehot[5:], scores[5:])
print("multiclass macro f1", repr(float(m.result())))

# Binary: one sigmoid unit, threshold 0.5.
p = np.array([[0.9], [0.2], [0.6], [0.4], [0.7], [0.1], [0.55], [0.3]], np.float32)
y = np.array([[1], [0], [0], [1], [1], [0], [1], [1]], np.float32)
m = keras.metrics.F1Score(average="macro", threshold=0.5)
m.update_state(y, p)
print("binary f1", repr(float(m.result())))
