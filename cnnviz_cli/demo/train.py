"""Train the bundled demo CNN on the procedural shapes dataset.

Usage: ``python -m cnnviz_cli.demo.train [--epochs N] [--seed S] [--out-dir DIR]
[--checkpoint-dir DIR]``.  Trains on a mix of 64, 96 and 128 px images (single
shapes with one-hot targets, two shapes with half-half targets), then writes
``shapes_cnn.keras`` and ``demo_model.json`` into the output directory and
per-epoch weight checkpoints (``epoch_00`` is the untrained initialisation)
into the checkpoint directory.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnviz_cli.demo.shapes import CLASS_NAMES, make_dataset, make_pairs  # noqa: E402

DEMO_DIRECTORY = Path(__file__).resolve().parent
MODEL_FILENAME = "shapes_cnn.keras"
METADATA_FILENAME = "demo_model.json"
TRAIN_SIZE = 96
SINGLE_SHAPE_SETS = {64: 3000, 96: 1500, 128: 1000}
TWO_SHAPE_SETS = {96: 600, 128: 400}
TEST_IMAGES = 1200
BATCH_SIZE = 32
LEARNING_RATE = 1.5e-3
BLOCK_FILTERS = ((32, 1), (32, 2), (64, 2))
LAST_CONV_FILTERS = 128
LAST_CONV_DILATION = 2


def build_model() -> keras.Model:
    """Fully convolutional classifier for images in [0, 1] of any size (overall stride 8).

    Each 3x3 convolution applies ReLU and is followed by per-image (instance)
    normalisation, which needs no batch statistics and so behaves the same at
    every input size; the last convolution (dilated, to widen its receptive
    field) feeds global average pooling and the softmax layer directly.
    """
    inputs = keras.Input((None, None, 3), name="image")
    features = inputs
    for block, (filters, conv_count) in enumerate(BLOCK_FILTERS, start=1):
        for conv in range(1, conv_count + 1):
            features = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{block}_conv{conv}"
            )(features)
            features = keras.layers.GroupNormalization(groups=-1, name=f"block{block}_norm{conv}")(
                features
            )
        features = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(features)
    features = keras.layers.Conv2D(
        LAST_CONV_FILTERS,
        3,
        padding="same",
        dilation_rate=LAST_CONV_DILATION,
        activation="relu",
        name=f"block{len(BLOCK_FILTERS) + 1}_conv",
    )(features)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="predictions")(pooled)
    return keras.Model(inputs, outputs, name="shapes_cnn")


def preprocess(images: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [0, 1], the model's expected input."""
    return images.astype(np.float32) / 255.0


def _augment(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """Random quarter-turn rotations and horizontal flips (labels are invariant to both)."""
    turns = rng.integers(0, 4, size=len(images))
    augmented = np.empty_like(images)
    for turn in range(4):
        selected = turns == turn
        augmented[selected] = np.rot90(images[selected], turn, axes=(1, 2))
    flipped = rng.random(len(images)) < 0.5
    augmented[flipped] = augmented[flipped][:, :, ::-1]
    return augmented


def _training_sets(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(images, target distributions) per image size: one-hot for one shape, half-half for two."""
    identity = np.eye(len(CLASS_NAMES), dtype=np.float32)
    training_sets = []
    for size, count in SINGLE_SHAPE_SETS.items():
        images, labels = make_dataset(count, size, seed=seed * 1000 + size)
        training_sets.append((images, identity[labels]))
    for size, count in TWO_SHAPE_SETS.items():
        images, labels, _ = make_pairs(count, size, seed=seed * 1000 + 500 + size)
        training_sets.append((images, identity[labels].mean(axis=1)))
    return training_sets


def _epoch_dataset(
    rng: np.random.Generator, training_sets: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> tf.data.Dataset:
    """One epoch of shuffled, augmented batches, interleaving the different image sets."""
    batched = []
    for images, targets in training_sets:
        order = rng.permutation(len(images))
        dataset = tf.data.Dataset.from_tensor_slices((_augment(rng, images[order]), targets[order]))
        batched.append(
            dataset.batch(BATCH_SIZE).map(
                lambda batch, batch_targets: (tf.cast(batch, tf.float32) / 255.0, batch_targets)
            )
        )
    batch_counts = np.array([-(-len(targets) // BATCH_SIZE) for _, targets in training_sets])
    mixed = tf.data.Dataset.sample_from_datasets(
        batched,
        weights=list(batch_counts / batch_counts.sum()),
        seed=seed,
        stop_on_empty_dataset=False,
    )
    return mixed.apply(tf.data.experimental.assert_cardinality(int(batch_counts.sum())))


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of `model` on uint8 `images`."""
    probabilities = model.predict(preprocess(images), batch_size=BATCH_SIZE, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def train(epochs: int, seed: int, out_dir: Path, checkpoint_dir: Path) -> dict[str, object]:
    """Generate data, train, save model, checkpoints and metadata; return the metadata."""
    keras.utils.set_random_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cpu_start = time.process_time()

    training_sets = _training_sets(seed)
    image_count = sum(len(images) for images, _ in training_sets)
    print(f"generated {image_count} training images in {time.perf_counter() - start:.1f}s")

    model = build_model()
    model.summary()
    steps_per_epoch = sum(-(-len(images) // BATCH_SIZE) for images, _ in training_sets)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(epochs * steps_per_epoch - steps_per_epoch // 2, 1),
        warmup_target=LEARNING_RATE,
        warmup_steps=steps_per_epoch // 2,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.save_weights(checkpoint_dir / "epoch_00.weights.h5")
    augment_rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        print(f"epoch {epoch}/{epochs}")
        model.fit(
            _epoch_dataset(augment_rng, training_sets, seed + epoch),
            epochs=1,
            shuffle=False,
            verbose=2,
        )
        model.save_weights(checkpoint_dir / f"epoch_{epoch:02d}.weights.h5")
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    print(f"training took {train_seconds:.1f}s wall-clock ({cpu_seconds:.1f}s CPU time)")

    test_images, test_labels = make_dataset(TEST_IMAGES, TRAIN_SIZE, seed=seed + 999_999)
    test_accuracy = evaluate(model, test_images, test_labels)
    print(f"held-out accuracy at {TRAIN_SIZE}px: {test_accuracy:.4f}")

    model_path = out_dir / MODEL_FILENAME
    inference_model = build_model()
    inference_model.set_weights(model.get_weights())
    inference_model.save(model_path)
    print(f"saved {model_path} ({model_path.stat().st_size / 1024:.0f} KiB)")
    metadata: dict[str, object] = {
        "labels": list(CLASS_NAMES),
        "preprocess": "unit",
        "train_size": TRAIN_SIZE,
        "test_accuracy": round(test_accuracy, 4),
        "train_seconds": round(train_seconds, 1),
        "seed": seed,
        "epochs": epochs,
    }
    (out_dir / METADATA_FILENAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="number of training epochs")
    parser.add_argument("--seed", type=int, default=0, help="random seed for data and weights")
    parser.add_argument(
        "--out-dir", type=Path, default=DEMO_DIRECTORY, help="where to write the model"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("demo-checkpoints"),
        help="where to write per-epoch weights",
    )
    arguments = parser.parse_args()
    train(arguments.epochs, arguments.seed, arguments.out_dir, arguments.checkpoint_dir)


if __name__ == "__main__":
    main()
