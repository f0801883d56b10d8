"""`@debuggable(post_mortem=True)` left on a train step that a test suite runs under pytest.

The shape that exposed it: while debugging, a user decorates the train step of
a Keras classifier with `post_mortem=True`; the project's tests then check that
bad labels are rejected with `pytest.raises(ValueError)`. Under pytest's output
capture there is no terminal for pdb: the post-mortem is skipped with one
warning and the test sees the original `ValueError`. A real inner pytest
session (`pytester`, in this process, capture on) runs that test file.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest
import tensorflow as tf

import eagerctl

keras = tf.keras


def make_classifier():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    optimizer = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @eagerctl.debuggable(post_mortem=True)
    @tf.function
    def train_step(x, y):
        if int(tf.reduce_min(y)) < 0 or int(tf.reduce_max(y)) >= 3:
            raise ValueError(f"labels must be in [0, 3), got {y.numpy().tolist()}")
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return loss

    return model, train_step


def test_trains_on_good_labels():
    model, train_step = make_classifier()
    x = tf.ones((4, 4))
    first = float(train_step(x, tf.constant([0, 1, 2, 1])))
    assert float(train_step(x, tf.constant([0, 1, 2, 1]))) < first


def test_rejects_labels_out_of_range():
    model, train_step = make_classifier()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"^labels must be in \\[0, 3\\), got \\[0, 7\\]$"):
        train_step(tf.ones((2, 4)), tf.constant([0, 7]))
    assert all((a == b).all() for a, b in zip(before, model.get_weights()))
'''


def test_post_mortem_under_pytest_capture_lets_pytest_raises_see_the_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_train_step=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-W", "default::eagerctl.EagerctlWarning")
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    assert text.count("EagerctlWarning: @debuggable make_classifier.<locals>.train_step (post_mortem=True): "
                      "ValueError raised in the body, but there is no interactive terminal") == 1
    assert "OSError" not in text and "(Pdb)" not in text
