"""Shared training loop for the example scripts that make the shipped models.

Each ``train_*.py`` script calls :func:`train_and_save`; this file keeps the loop in one place.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from seggradcam.data import mean_iou

MODELS_DIR = Path(__file__).resolve().parent.parent / "seggradcam" / "data" / "models"


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse square-root frequency weights, normalised to mean 1 over pixels."""
    counts = np.bincount(labels.ravel(), minlength=num_classes).astype(np.float64) + 1.0
    weights = 1.0 / np.sqrt(counts / counts.sum())
    return (weights / (weights[labels.ravel()].mean())).astype(np.float32)


def predict_labels(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return model.predict(images, batch_size=batch_size, verbose=0).argmax(axis=-1)


def train_and_save(
    model, name, train, held_out, epochs, seed, command, learning_rate=1e-3, batch_size=16, builder=None, models_dir=None, measure=None
):
    """Train ``model`` on ``train`` = (images, labels), evaluate on ``held_out``, save uncompiled.

    ``models_dir`` (default: the package's ``data/models``) is where ``<name>.keras`` and
    ``<name>.json`` go; ``measure(model)``, if given, returns a dict of further measurements of the
    trained model, added to the record.
    Returns a dict with the record written next to the model (``<name>.json``).
    """
    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    keras.utils.set_random_seed(seed)
    images, labels = train
    num_classes = model.output_shape[-1]
    weights = class_weights(labels, num_classes)
    sample_weights = weights[labels]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    start = time.perf_counter()
    schedule = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, verbose=0)
    history = model.fit(
        images, labels, sample_weight=sample_weights, batch_size=batch_size, epochs=epochs, verbose=2, callbacks=[schedule], shuffle=True
    )
    seconds = time.perf_counter() - start
    prediction = predict_labels(model, held_out[0])
    miou, per_class = mean_iou(held_out[1], prediction, num_classes)
    fresh = builder() if builder else keras.models.clone_model(model)
    fresh.set_weights(model.get_weights())
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{name}.keras"
    fresh.save(path)
    record = {
        "name": name,
        "command": command,
        "seed": seed,
        "epochs": epochs,
        "train_images": int(len(images)),
        "held_out_images": int(len(held_out[0])),
        "training_seconds": round(seconds, 1),
        "held_out_miou": round(miou, 4),
        "held_out_per_class_iou": [None if np.isnan(v) else round(float(v), 4) for v in per_class],
        "parameters": int(fresh.count_params()),
        "file_bytes": path.stat().st_size,
        "loss_history": [round(float(v), 4) for v in history.history["loss"]],
        **(measure(model) if measure else {}),
    }
    (models_dir / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return record
