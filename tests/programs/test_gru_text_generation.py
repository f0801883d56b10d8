"""A character-level GRU language model trained with `fit` and Adam, then sampled.

In the style of the TensorFlow tutorial "Text generation with an RNN": text
cut into sequences, each split into input and target shifted by one
character, a `keras.Model` subclass of an `Embedding`, a `GRU` that returns
its sequences and state, and a `Dense` layer of logits, compiled with Adam and
sparse categorical cross-entropy from logits; then a one-step generator, a
`tf.function` that feeds the state back, picks characters one at a time. The
suspect a user would decorate: the embedding layer's `call`. It becomes an eager
island inside Keras's compiled train function and inside the generator.

Its gradient is sparse (`tf.IndexedSlices`, from the embedding's gather), and
Keras 3's Adam updates the moments of the gathered rows only: when islands
turned that gradient dense, this program's loss differed from the plain one's
from the second step on (3.5e-4 relative here; 1.6% in the full tutorial).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from program_checks import (
    assert_close,
    assert_memory_flat,
    assert_ran_eagerly_every_step,
    keras,
    maybe_debuggable,
)

pytestmark = pytest.mark.usefixtures("same_random_numbers")
layers = keras.layers
TEXT = ("First Citizen: Before we proceed any further, hear me speak. All: Speak, speak. "
        "First Citizen: You are all resolved rather to die than to famish? All: Resolved. resolved. ")
SEQ_LENGTH = 20
BATCH = 4
EPOCHS = 2
GENERATED = 12


class BatchLosses(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append(float(logs["loss"]))


def split_input_target(sequence: Any) -> tuple[Any, Any]:
    return sequence[:-1], sequence[1:]


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append
    vocab = sorted(set(TEXT))
    ids_from_chars = {c: i + 1 for i, c in enumerate(vocab)}  # 0: the tutorial's [UNK]
    vocab_size = len(vocab) + 1

    class CharEmbedding(layers.Layer):  # type: ignore[misc]
        def __init__(self, vocab_size: int, embedding_dim: int) -> None:
            super().__init__()
            self.embedding = layers.Embedding(vocab_size, embedding_dim)

        @maybe_debuggable(debug)
        def call(self, inputs: Any) -> Any:
            note(tf.executing_eagerly())
            return self.embedding(inputs)

    class MyModel(keras.Model):  # type: ignore[misc]
        def __init__(self, vocab_size: int, embedding_dim: int, rnn_units: int) -> None:
            super().__init__()
            self.embedding = CharEmbedding(vocab_size, embedding_dim)
            self.gru = layers.GRU(rnn_units, return_sequences=True, return_state=True)
            self.dense = layers.Dense(vocab_size)

        def call(self, inputs: Any, states: Any = None, return_state: bool = False,
                 training: bool = False) -> Any:
            x = self.embedding(inputs, training=training)
            if states is None:
                x, states = self.gru(x, training=training)
            else:
                x, states = self.gru(x, initial_state=states, training=training)
            x = self.dense(x, training=training)
            return (x, states) if return_state else x

    keras.utils.set_random_seed(17)
    model = MyModel(vocab_size, embedding_dim=16, rnn_units=24)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    all_ids = np.array([ids_from_chars[c] for c in TEXT], dtype="int64")
    sequences = tf.data.Dataset.from_tensor_slices(all_ids).batch(SEQ_LENGTH + 1, drop_remainder=True)
    dataset = sequences.map(split_input_target).batch(BATCH, drop_remainder=True)

    @tf.function
    def generate_one_step(inputs: Any, states: Any = None) -> tuple[Any, Any]:
        predicted_logits, states = model(inputs=inputs, states=states, return_state=True)
        predicted_logits = predicted_logits[:, -1, :]
        predicted_logits = predicted_logits - 1e9 * tf.one_hot(0, vocab_size)  # never [UNK]
        return tf.argmax(predicted_logits, axis=-1)[:, None], states  # greedy: the same in both

    # Keras 2 (TF 2.13) draws other initial weights for a second model built from the
    # same seed in one process: both programs start from the same weights instead.
    model(next(iter(dataset))[0])
    rng = np.random.default_rng(17)
    model.set_weights([rng.normal(0.0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    record.clear()  # the build above ran the embedding eagerly, outside any graph

    start = tf.constant([[ids_from_chars[c] for c in "First"]], dtype="int64")
    return SimpleNamespace(model=model, dataset=dataset, record=record, generate_one_step=generate_one_step,
                           start=start, batches=len(list(dataset)))


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[float]:
    losses = BatchLosses()
    program.model.fit(program.dataset, epochs=epochs, shuffle=False, verbose=0, callbacks=[losses])
    return losses.seen


def generate(program: SimpleNamespace) -> list[int]:
    next_ids, states = program.generate_one_step(program.start)
    out = [int(next_ids[0, 0])]
    for _ in range(GENERATED - 1):
        next_ids, states = program.generate_one_step(next_ids, states=states)
        out.append(int(next_ids[0, 0]))
    return out


@pytest.fixture(scope="module")
def trained(same_random_numbers: None) -> dict[str, Any]:
    """Both programs trained from the same seed, and what that gave (the debugged one trains on later)."""
    debugged, reference = make_program(True), make_program(False)
    facts: dict[str, Any] = {"debugged": debugged, "losses": train(debugged), "want": train(reference)}
    facts.update({"record": list(debugged.record), "reference record": list(reference.record),
                  "weights": debugged.model.get_weights(), "want weights": reference.model.get_weights()})
    debugged.record.clear()
    facts["generated"] = generate(debugged)
    facts["generate record"] = list(debugged.record)
    facts["want generated"] = generate(reference)
    return facts


def test_losses_and_weights_match_the_compiled_program(trained: dict[str, Any]) -> None:
    steps = trained["debugged"].batches * EPOCHS
    assert steps >= 4
    assert_ran_eagerly_every_step(trained["record"], steps)
    assert True not in trained["reference record"]
    assert_close(trained["losses"], trained["want"], "losses")
    assert_close(trained["weights"], trained["want weights"], "weights")


def test_generated_text_matches_the_compiled_program(trained: dict[str, Any]) -> None:
    # Two traces of the generator (without states, then with), each with its island.
    assert trained["generate record"].count(False) == 2
    assert trained["generate record"].count(True) == GENERATED
    assert trained["generated"] == trained["want generated"]


def test_memory_stays_flat(trained: dict[str, Any]) -> None:
    program = trained["debugged"]  # trained already: warmed up
    assert_memory_flat(lambda: train(program, epochs=4), warmup=0, steps=1)
