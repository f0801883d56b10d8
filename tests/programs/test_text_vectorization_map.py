"""A `tf.data` pipeline that vectorizes text in a `map` function, feeding a small classifier.

In the style of the TensorFlow tutorial "Basic text classification": a custom
standardization (lowercase, strip `<br />` tags and punctuation), a
`TextVectorization` layer adapted on the training text, a `vectorize_text(text,
label)` function mapped over the batched dataset, then an embedding, pooling
and dense classifier trained with `fit`. The suspect a user would decorate:
`vectorize_text`, the map function. tf.data traces map functions into the
dataset's graph (they never honor TF's eager flag), so it becomes an eager
island there: it runs eagerly for every batch the pipeline produces.
"""

from __future__ import annotations

import re
import string
from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow as tf
from program_checks import (
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    keras,
    maybe_debuggable,
)

layers = keras.layers
MAX_FEATURES = 40
SEQUENCE_LENGTH = 10
BATCHES = 3
EPOCHS = 2
WORDS = ["good", "great", "fine", "fun", "bad", "awful", "dull", "poor", "the", "a", "movie", "plot"]


def reviews(seed: int, count: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        words = rng.choice(WORDS, size=int(rng.integers(3, 12)))
        text = " ".join(w.upper() if rng.random() < 0.3 else w for w in words)
        texts.append(text.replace(" the ", ".<br /><br />the ", 1) + "!")
        labels.append(int(sum(w in WORDS[:4] for w in words) > sum(w in WORDS[4:8] for w in words)))
    return texts, labels


def custom_standardization(input_data: Any) -> Any:
    lowercase = tf.strings.lower(input_data)
    stripped_html = tf.strings.regex_replace(lowercase, "<br />", " ")
    return tf.strings.regex_replace(stripped_html, f"[{re.escape(string.punctuation)}]", "")


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append
    texts, labels = reviews(0, BATCHES * 8)
    raw_train_ds = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(8)

    vectorize_layer = layers.TextVectorization(
        standardize=custom_standardization,
        max_tokens=MAX_FEATURES,
        output_mode="int",
        output_sequence_length=SEQUENCE_LENGTH,
    )
    vectorize_layer.adapt(raw_train_ds.map(lambda x, y: x))

    @maybe_debuggable(debug)
    def vectorize_text(text: Any, label: Any) -> Any:
        note(tf.executing_eagerly())
        text = tf.expand_dims(text, -1)
        return vectorize_layer(text), label

    train_ds = raw_train_ds.map(vectorize_text).cache().prefetch(buffer_size=tf.data.AUTOTUNE)

    keras.utils.set_random_seed(41)
    model = keras.Sequential([
        keras.Input(shape=(SEQUENCE_LENGTH,), dtype="int64"),
        layers.Embedding(MAX_FEATURES, 8),
        layers.GlobalAveragePooling1D(),
        layers.Dense(1),
    ])
    model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True), optimizer="adam")
    record.clear()  # tf.data traced the map function (once, or twice for a scratch trace)
    return SimpleNamespace(model=model, train_ds=train_ds, raw_train_ds=raw_train_ds,
                           vectorize_text=vectorize_text, record=record)


def test_batches_losses_and_weights_match_the_compiled_pipeline() -> None:
    debugged, reference = make_program(True), make_program(False)
    got = [(t.numpy(), y.numpy()) for t, y in debugged.train_ds]
    want = [(t.numpy(), y.numpy()) for t, y in reference.train_ds]
    assert_close(got, want, "vectorized batches")
    assert_ran_eagerly_every_step(debugged.record, BATCHES)  # the cache serves later epochs
    assert reference.record == []  # compiled into the dataset's graph

    history = debugged.model.fit(debugged.train_ds, epochs=EPOCHS, shuffle=False, verbose=0).history["loss"]
    want_history = reference.model.fit(reference.train_ds, epochs=EPOCHS, shuffle=False,
                                          verbose=0).history["loss"]
    assert_close(history, want_history, "losses")
    assert_close(debugged.model.get_weights(), reference.model.get_weights(), "weights")


def test_memory_stays_flat() -> None:
    program = make_program(True)
    uncached = program.raw_train_ds.map(program.vectorize_text)

    def one_pass() -> None:
        for _ in uncached:
            pass

    assert_memory_flat(one_pass, warmup=2, steps=10)
    assert_ran_eagerly_every_step(program.record, 12 * BATCHES)
