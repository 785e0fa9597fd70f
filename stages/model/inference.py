"""Prediction with a trained network: threaded, in chunks, on any backend."""

from __future__ import annotations

import os
import weakref

import keras
import numpy as np

from stages.model.head import decision, logits_model

# Most rows per call into the model when predicting. Small enough that an ensemble's
# intermediate arrays stay near the CPU's caches: on 2 cores, Adult's network scored
# faster in calls of 8,192 rows than of 4,096, 16,384 or 32,768.
PREDICT_CHUNK_ROWS = 8_192
# Fewer rows than this per thread and threads cost more than they save: starting them and
# limiting BLAS to one thread each take about 1.5 ms (1,000 of Adult's rows: 13 ms in one
# call, 16 ms in two threads).
MIN_THREAD_ROWS = 4_096


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _outputs(model: keras.Model, features) -> np.ndarray:
    """The model's outputs for inputs as it takes them (an array, a tuple of arrays, or a
    dict of them by input name), one call per chunk of rows.

    On the numpy backend the chunks run on every core at once, each matrix product on a
    single thread: the backend's other operations (copies, activations, cos and sin) use
    one core, so threads over chunks keep both busy (Adult's network on 2 cores: 150,000
    to 160,000 rows/s, against 92,000 to 99,000 one chunk at a time). Each row's result is
    the same either way."""
    if isinstance(features, dict):
        rows = len(next(iter(features.values())))
        take = lambda a, b: {name: part[a:b] for name, part in features.items()}  # noqa: E731
    elif isinstance(features, tuple | list):
        rows = len(features[0])
        take = lambda a, b: tuple(part[a:b] for part in features)  # noqa: E731
    else:
        rows = len(features)
        take = lambda a, b: features[a:b]  # noqa: E731
    workers = usable_cpus() if keras.backend.backend() == "numpy" else 1
    workers = max(1, min(workers, rows // MIN_THREAD_ROWS))
    # As many chunks as the rows need, rounded up to a multiple of the workers, all of
    # one size: no worker is left with the last, lone chunk.
    count = -(-rows // PREDICT_CHUNK_ROWS)
    count = max(1, -(-count // workers) * workers)
    size = max(1, -(-rows // count))
    starts = range(0, rows, size)

    def call(start: int) -> np.ndarray:
        return np.asarray(model.predict_on_batch(take(start, start + size)))

    workers = min(workers, len(starts))
    if workers < 2:
        chunks = [call(start) for start in starts]
    else:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            chunks = list(pool.map(call, starts))
    return np.concatenate(chunks).astype("float64")


def predict_proba(model: keras.Model, features) -> np.ndarray:
    """Class probabilities, shape (rows, classes), whatever the head."""
    raw = _outputs(model, features)
    if raw.shape[1] == 1:
        return np.hstack([1.0 - raw, raw])
    return raw


def predict_values(model: keras.Model, features) -> np.ndarray:
    """A regression model's predictions, shape (rows,), in the target's units."""
    return _outputs(model, features).reshape(-1)


# Each classifier's model cut before its head, built once: building it costs more than
# scoring a few rows (a server answers one row at a time).
_LOGITS_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_logits(model: keras.Model, features) -> np.ndarray:
    """A classifier's logits, before its calibrated head."""
    cut = _LOGITS_MODELS.get(model)
    if cut is None:
        cut = _LOGITS_MODELS[model] = logits_model(model)
    return _outputs(cut, features)


def class_probabilities(model: keras.Model, features) -> tuple[np.ndarray, np.ndarray]:
    """A classifier's calibrated and uncalibrated class probabilities (rows x classes),
    from one pass of the network: its head's calibration applied to its logits in float64
    (equal to the head's own float32 output to rounding)."""
    from stages.model.calibration import probabilities

    logits = predict_logits(model, features)
    held = decision(model)
    calibrated = probabilities(logits, scale=held["scale"], shift=held["shift"])
    return calibrated, probabilities(logits)
