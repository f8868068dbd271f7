"""Train the bundled demo CNN on the procedural shapes dataset.

Usage: ``python -m cnnviz_cli.demo.train [--epochs N] [--localise-epochs M] [--init MODEL]
[--seed S] [--out-dir DIR] [--checkpoint-dir DIR] [--visualize DIR]``.  Trains on 64, 96
and 128 px scenes holding no, one or two shapes, in two stages. Stage 1 (classify): a
softmax over the classes in the scene. Stage 2 (localise): each class an independent
yes/no (sigmoid) target, both for the whole image and at every position of the last
feature map, where the target is the share of the position's cell that the class's shapes
cover; this puts the class evidence that global average pooling sums on the shapes, so the
model is a ground truth for localisation (the pointing game of `cnnviz cam`). `--init`
starts from an earlier model file, folding away a per-image normalisation it may have (see
`without_normalisation`; with ``--epochs 0``: stage 2 only). The saved model ends in
softmax. Writes ``shapes_cnn.keras`` and ``demo_model.json`` into the output directory
and per-epoch weight checkpoints (``epoch_00`` is the starting point) into the
checkpoint directory; `--visualize` follows the training with a VisualizeCallback.
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

from cnnviz_cli.demo.shapes import CLASS_NAMES, draw_scene, make_dataset  # noqa: E402

DEMO_DIRECTORY = Path(__file__).resolve().parent
MODEL_FILENAME = "shapes_cnn.keras"
METADATA_FILENAME = "demo_model.json"
TRAIN_SIZE = 96
# (image side, shapes per scene): scene count
SCENE_SETS = {
    (64, 1): 2000,
    (96, 1): 1500,
    (128, 1): 1500,
    (96, 2): 1200,
    (128, 2): 600,
    (96, 0): 300,
}
TEST_IMAGES = 1200
BATCH_SIZE = 32
LEARNING_RATE = 5e-4
BLOCK_FILTERS = ((32, 1), (32, 2), (64, 2))
LAST_CONV_FILTERS = 128
STRIDE = 2 ** len(BLOCK_FILTERS)


def build_model(head: str = "softmax") -> keras.Model:
    """Fully convolutional classifier for images in [0, 1] of any size (overall stride 8).

    Plain 3x3 convolutions with ReLU (He initialisation) and no normalisation, so the model
    behaves the same at every input size and faint input stays faint; the last convolution
    feeds global average pooling and the `head` layer directly, the classic CAM architecture.
    """

    def convolution(filters: int, name: str) -> keras.layers.Conv2D:
        return keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer="he_normal",
            name=name,
        )

    inputs = keras.Input((None, None, 3), name="image")
    features = inputs
    for block, (filters, conv_count) in enumerate(BLOCK_FILTERS, start=1):
        for conv in range(1, conv_count + 1):
            features = convolution(filters, f"block{block}_conv{conv}")(features)
        features = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(features)
    features = convolution(LAST_CONV_FILTERS, f"block{len(BLOCK_FILTERS) + 1}_conv")(features)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation=head, name="predictions")(pooled)
    return keras.Model(inputs, outputs, name="shapes_cnn")


def without_normalisation(source: keras.Model, images: np.ndarray) -> keras.Model:
    """A `build_model` network close to the model `source`, which may normalise each feature
    map per image after a convolution (``blockB_normC`` after ``blockB_convC``, as the earlier
    bundled models did): each normalisation becomes the fixed scale and shift of its average
    statistics over `images` (uint8), folded into the next convolution's kernel and bias.
    (Max pooling in between commutes with positive scales.)"""
    plain = build_model()
    source_names = {layer.name for layer in source.layers}
    convolutions = [layer for layer in plain.layers if isinstance(layer, keras.layers.Conv2D)]
    norms = {conv.name: conv.name.replace("_conv", "_norm") for conv in convolutions}
    norms = {conv: norm for conv, norm in norms.items() if norm in source_names}
    statistics = {}
    if norms:
        inputs = {conv: source.get_layer(norm).input for conv, norm in norms.items()}
        statistics = keras.Model(source.inputs, inputs)([preprocess(images)])
    scale, shift = np.float32(1.0), np.float32(0.0)
    for layer in convolutions:
        kernel, bias = source.get_layer(layer.name).get_weights()
        shift = np.broadcast_to(shift, kernel.shape[2])
        layer.set_weights(
            [kernel * np.reshape(scale, (-1, 1)), bias + np.einsum("hwio,i->o", kernel, shift)]
        )
        scale, shift = np.float32(1.0), np.float32(0.0)
        if layer.name in norms:
            normalisation = source.get_layer(norms[layer.name])
            features = np.asarray(statistics[layer.name])
            gamma, beta = normalisation.get_weights()
            spread = np.sqrt(features.var(axis=(1, 2)) + normalisation.epsilon).mean(axis=0)
            scale = gamma / spread
            shift = beta - scale * features.mean(axis=(0, 1, 2))
    plain.get_layer("predictions").set_weights(source.get_layer("predictions").get_weights())
    return plain


def preprocess(images: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [0, 1], the model's expected input."""
    return images.astype(np.float32) / 255.0


def _augment(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random quarter-turn and horizontal flip per item of every (N, H, W, ...) array
    (labels are invariant to both)."""
    turns = rng.integers(0, 4, size=len(arrays[0]))
    flipped = rng.random(len(arrays[0])) < 0.5
    augmented = []
    for array in arrays:
        turned = np.empty_like(array)
        for turn in range(4):
            turned[turns == turn] = np.rot90(array[turns == turn], turn, axes=(1, 2))
        turned[flipped] = turned[flipped][:, :, ::-1]
        augmented.append(turned)
    return augmented


def _scenes(rng: np.random.Generator, count: int, size: int, shapes: int) -> tuple:
    """`count` scenes of `shapes` distinct random classes: uint8 images, multi-hot class
    targets and per-cell coverage (N, size / STRIDE, size / STRIDE, classes) of every class."""
    images = np.empty((count, size, size, 3), np.uint8)
    targets = np.zeros((count, len(CLASS_NAMES)), np.float32)
    coverage = np.zeros((count, size // STRIDE, size // STRIDE, len(CLASS_NAMES)), np.float32)
    cells = (size // STRIDE, STRIDE, size // STRIDE, STRIDE)
    for index in range(count):
        classes = rng.choice(len(CLASS_NAMES), shapes, replace=False)
        images[index], masks = draw_scene(rng, size, [int(value) for value in classes])
        targets[index, classes] = 1.0
        for class_index, mask in zip(classes, masks, strict=True):
            coverage[index, ..., class_index] = mask.reshape(cells).mean(axis=(1, 3))
    return images, targets, coverage


def _training_sets(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(images, targets, coverage) per image size and shape count."""
    return [
        _scenes(np.random.default_rng([seed, size, shapes]), count, size, shapes)
        for (size, shapes), count in SCENE_SETS.items()
    ]


def _batch_count(images: np.ndarray) -> int:
    """Batches of BATCH_SIZE (the last one may be short) in an epoch over `images`."""
    return -(-len(images) // BATCH_SIZE)


def _epoch_dataset(
    rng: np.random.Generator, training_sets: list[tuple], seed: int
) -> tf.data.Dataset:
    """One epoch of shuffled, augmented batches, interleaving the different image sets."""
    batched = []
    for images, targets, coverage in training_sets:
        order = rng.permutation(len(images))
        images, coverage = _augment(rng, images[order], coverage[order])
        dataset = tf.data.Dataset.from_tensor_slices((images, (targets[order], coverage)))
        batched.append(
            dataset.batch(BATCH_SIZE).map(
                lambda batch, wanted: (tf.cast(batch, tf.float32) / 255.0, wanted)
            )
        )
    batch_counts = np.array([_batch_count(images) for images, *_ in training_sets])
    mixed = tf.data.Dataset.sample_from_datasets(
        batched,
        weights=list(batch_counts / batch_counts.sum()),
        seed=seed,
        stop_on_empty_dataset=False,
    )
    return mixed.apply(tf.data.experimental.assert_cardinality(int(batch_counts.sum())))


def _classifier_stage(model: keras.Model) -> tuple[keras.Model, object, object]:
    """Stage 1, which learns fast: a softmax over the classes in the scene (the target shared
    out among them; empty scenes add nothing)."""
    trainer = keras.Model(model.inputs, model.outputs, name="classify")
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)

    def wanted(images, targets):
        classes, _ = targets
        return images, classes / tf.maximum(tf.reduce_sum(classes, -1, keepdims=True), 1.0)

    return trainer, loss, wanted


def _localiser_stage(model: keras.Model) -> tuple[keras.Model, object, object]:
    """Stage 2: every class a yes/no target for the whole image and, through the classifier
    applied at every position of the last feature map (the evidence that global average pooling
    averages), for each cell: the share of the cell that the class's shapes cover."""
    features = model.get_layer(f"block{len(BLOCK_FILTERS) + 1}_conv").output
    positions = model.get_layer("predictions")(features)
    trainer = keras.Model(model.inputs, [model.output, positions], name="localise")
    loss = [keras.losses.BinaryCrossentropy(from_logits=True)] * 2
    return trainer, loss, lambda images, targets: (images, targets)


def _schedule(training_sets: list[tuple], epochs: int) -> keras.optimizers.schedules.CosineDecay:
    """Half an epoch of linear warm-up to LEARNING_RATE, then cosine decay to zero."""
    steps_per_epoch = sum(_batch_count(images) for images, *_ in training_sets)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(epochs * steps_per_epoch - steps_per_epoch // 2, 1),
        warmup_target=LEARNING_RATE,
        warmup_steps=steps_per_epoch // 2,
    )


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of `model` on uint8 `images`."""
    probabilities = model.predict(preprocess(images), batch_size=BATCH_SIZE, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


SAMPLE_SCENES = {"star": [3], "circle": [0], "square_and_ring": [1, 5]}  # followed in training


def watcher(folder: Path, seed: int):
    """A VisualizeCallback following GradCAM on a few sample scenes (written into
    `folder/samples`) and the first-layer kernels, into `folder` and `folder/logs`."""
    from PIL import Image

    from cnnviz_cli.callbacks import VisualizeCallback

    samples = folder / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 7)
    paths = []
    for name, classes in SAMPLE_SCENES.items():
        Image.fromarray(draw_scene(rng, TRAIN_SIZE, classes)[0]).save(samples / f"{name}.png")
        paths.append(str(samples / f"{name}.png"))
    return VisualizeCallback(paths, techniques=("cam", "filters"), out=folder,
                             log_dir=folder / "logs", methods=["gradcam"],
                             layer="block1_conv1", preprocess="unit", labels=list(CLASS_NAMES))


def train(
    epochs: int,
    localise_epochs: int,
    seed: int,
    out_dir: Path,
    checkpoint_dir: Path,
    init: Path | None = None,
    visualize: Path | None = None,
) -> dict[str, object]:
    """Generate data, train (from the weights of the model file `init`, if given), save model,
    checkpoints and metadata; return the metadata. With `visualize`, a VisualizeCallback
    follows the training into that folder (see `watcher`)."""
    keras.utils.set_random_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cpu_start = time.process_time()

    training_sets = _training_sets(seed)
    image_count = sum(len(images) for images, *_ in training_sets)
    print(f"generated {image_count} training images in {time.perf_counter() - start:.1f}s")

    model = build_model(head="linear")
    model.summary()
    if init:
        sample = training_sets[list(SCENE_SETS).index((TRAIN_SIZE, 1))][0][:256]
        start_model = without_normalisation(keras.saving.load_model(init), sample)
        model.set_weights(start_model.get_weights())
    model.save_weights(checkpoint_dir / "epoch_00.weights.h5")
    callback = None
    if visualize is not None:  # driven by hand: each epoch is a fit() of its stage's trainer
        callback = watcher(visualize, seed)
        callback.set_model(model)
        callback.on_train_begin()
    augment_rng = np.random.default_rng(seed)
    stages = [(_classifier_stage(model), epochs), (_localiser_stage(model), localise_epochs)]
    total, epoch = epochs + localise_epochs, 0
    for (trainer, loss, wanted), stage_epochs in stages:
        if not stage_epochs:
            continue
        optimizer = keras.optimizers.Adam(_schedule(training_sets, stage_epochs), clipnorm=1.0)
        trainer.compile(optimizer=optimizer, loss=loss)
        for _ in range(stage_epochs):
            epoch += 1
            print(f"epoch {epoch}/{total} ({trainer.name})")
            batches = _epoch_dataset(augment_rng, training_sets, seed + epoch)
            trainer.fit(batches.map(wanted), shuffle=False, verbose=2)
            model.save_weights(checkpoint_dir / f"epoch_{epoch:02d}.weights.h5")
            if callback is not None:
                callback.on_epoch_end(epoch - 1)
                print(f"visualised in {callback.seconds[-1]:.1f}s")
    if callback is not None:
        callback.on_train_end()
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    print(f"training took {train_seconds:.1f}s wall-clock ({cpu_seconds:.1f}s CPU time)")

    inference_model = build_model()
    inference_model.set_weights(model.get_weights())
    test_images, test_labels = make_dataset(TEST_IMAGES, TRAIN_SIZE, seed=seed + 999_999)
    test_accuracy = evaluate(inference_model, test_images, test_labels)
    print(f"held-out accuracy at {TRAIN_SIZE}px: {test_accuracy:.4f}")

    model_path = out_dir / MODEL_FILENAME
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
        "localise_epochs": localise_epochs,
        "init": init.name if init else None,
    }
    (out_dir / METADATA_FILENAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of stage 1 (classify)")
    parser.add_argument(
        "--localise-epochs", type=int, default=4, help="epochs of stage 2 (localise)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for data and weights")
    parser.add_argument(
        "--init", type=Path, help="start from this model file (its normalisation folded away)"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DEMO_DIRECTORY, help="where to write the model"
    )
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path("demo-checkpoints"),
        help="where to write per-epoch weights",
    )
    parser.add_argument(
        "--visualize", type=Path, metavar="DIR",
        help="follow GradCAM on sample scenes and the first-layer kernels epoch by epoch into "
        "DIR (strips, GIFs, TensorBoard logs in DIR/logs)",
    )
    arguments = parser.parse_args()
    train(
        arguments.epochs,
        arguments.localise_epochs,
        arguments.seed,
        arguments.out_dir,
        arguments.checkpoint_dir,
        arguments.init,
        arguments.visualize,
    )


if __name__ == "__main__":
    main()
