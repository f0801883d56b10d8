"""A transformer text classifier trained with `compile` and `fit`.

In the style of the keras.io example "Text classification with Transformer": a
token-and-position embedding, one transformer block (multi-head
self-attention, a feed-forward network, layer normalization and dropout),
global average pooling, dropout and a softmax head. The suspect a user would
decorate: the transformer block's `call`. Keras runs it inside its compiled
train function, so it becomes an eager island. As in the example, the block
does not pass `training` on: its dropout layers learn it from Keras's call
context, so the island must carry that context over (dropout drops while `fit`
trains, not while `predict` runs), as in the compiled block.
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
VOCAB_SIZE = 50
MAXLEN = 12
BATCHES = 3
EPOCHS = 2


class BatchLosses(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append(float(logs["loss"]))


class TokenAndPositionEmbedding(layers.Layer):  # type: ignore[misc]
    def __init__(self, maxlen: int, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x: Any) -> Any:
        positions = tf.range(start=0, limit=tf.shape(x)[-1], delta=1)
        return self.token_emb(x) + self.pos_emb(positions)


def make_program(debug: bool) -> SimpleNamespace:
    record: list[bool] = []
    note = record.append

    class TransformerBlock(layers.Layer):  # type: ignore[misc]
        def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, rate: float = 0.1) -> None:
            super().__init__()
            self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
            self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
            self.dropout1 = layers.Dropout(rate)
            self.dropout2 = layers.Dropout(rate)

        @maybe_debuggable(debug)
        def call(self, inputs: Any) -> Any:
            note(tf.executing_eagerly())
            attn_output = self.att(inputs, inputs)
            attn_output = self.dropout1(attn_output)
            out1 = self.layernorm1(inputs + attn_output)
            ffn_output = self.ffn(out1)
            ffn_output = self.dropout2(ffn_output)
            return self.layernorm2(out1 + ffn_output)

    keras.utils.set_random_seed(21)
    inputs = keras.Input(shape=(MAXLEN,))
    x = TokenAndPositionEmbedding(MAXLEN, VOCAB_SIZE, 16)(inputs)
    x = TransformerBlock(16, 2, 16, rate=0.3)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(8, activation="relu")(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")

    rng = np.random.default_rng(8)
    x_train = rng.integers(0, VOCAB_SIZE, size=(BATCHES * 8, MAXLEN)).astype("int32")
    y_train = (x_train[:, 0] > VOCAB_SIZE // 2).astype("int32")  # learnable: the first token's half
    record.clear()  # building the functional model calls the block symbolically
    return SimpleNamespace(model=model, x=x_train, y=y_train, record=record)


def train(program: SimpleNamespace, epochs: int = EPOCHS) -> list[float]:
    losses = BatchLosses()
    program.model.fit(program.x, program.y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                      callbacks=[losses])
    return losses.seen


@pytest.fixture(scope="module")
def trained(same_random_numbers: None) -> dict[str, Any]:
    """Both programs trained from the same seed, and what that gave (the debugged one trains on later)."""
    debugged, reference = make_program(True), make_program(False)
    facts: dict[str, Any] = {"debugged": debugged, "losses": train(debugged), "want": train(reference)}
    facts.update({"record": list(debugged.record), "reference record": list(reference.record),
                  "weights": debugged.model.get_weights(), "want weights": reference.model.get_weights()})
    debugged.record.clear()
    facts["predicted"] = debugged.model.predict(debugged.x, batch_size=8, verbose=0)
    facts["predict record"] = list(debugged.record)
    facts["want predicted"] = reference.model.predict(reference.x, batch_size=8, verbose=0)
    return facts


def test_losses_weights_and_predictions_match_the_compiled_program(trained: dict[str, Any]) -> None:
    assert_ran_eagerly_every_step(trained["record"], BATCHES * EPOCHS)
    assert True not in trained["reference record"]
    assert_close(trained["losses"], trained["want"], "losses")  # dropout dropped the same units in both
    assert_close(trained["weights"], trained["want weights"], "weights")
    assert_ran_eagerly_every_step(trained["predict record"], BATCHES)
    assert_close(trained["predicted"], trained["want predicted"], "predictions")


def test_memory_stays_flat(trained: dict[str, Any]) -> None:
    program = trained["debugged"]  # trained already: warmed up
    assert_memory_flat(lambda: train(program, epochs=4), warmup=0, steps=1)  # one fit of 12 steps
