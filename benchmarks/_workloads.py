"""The train steps whose compiled and eager costs users weigh.

Each builder returns a compiled step (`tf.function`) and its arguments. The
article's step is its Example 3 as written (a one-unit Dense model, Adam, MSE,
three samples) with the `@tf.function` the article leaves out; the others are
the sizes people actually debug: a 512-wide MLP on MNIST-shaped batches and a
small convolutional network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Workload:
    key: str
    name: str
    step: Any  # a tf.function taking `args`
    args: tuple[Any, ...]
    loss_calls: list[int]  # one entry per run of the loss function's Python body


Wrap = Callable[[Callable[..., Any]], Any]


def _train_step(model: Any, optimizer: Any, loss_fn: Callable[..., Any]) -> Any:
    import tensorflow as tf

    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            loss = loss_fn(y, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    return tf.function(step)


def _loss(keras_loss: Any, wrap: Wrap | None) -> tuple[Callable[..., Any], list[int]]:
    """A plain function around a Keras loss object, so `@debuggable` can decorate exactly the loss."""
    calls: list[int] = []
    # Bound once: AutoGraph's conversion of `calls.append(...)` in a closure
    # trips its "closure mismatch" check when the function is converted on
    # its own (as `@debuggable` does while tracing); a plain call does not.
    tick = calls.append

    def loss_fn(y: Any, predictions: Any) -> Any:
        tick(1)
        return keras_loss(y, predictions)

    return (wrap(loss_fn) if wrap is not None else loss_fn), calls


def article(wrap_loss: Wrap | None = None) -> Workload:
    """The source article's Example 3, compiled; `wrap_loss` decorates its loss function."""
    import tensorflow as tf

    class SimpleModel(tf.keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = tf.keras.layers.Dense(1)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    tf.keras.utils.set_random_seed(0)
    model = SimpleModel()
    loss_fn, calls = _loss(tf.keras.losses.MeanSquaredError(), wrap_loss)
    step = _train_step(model, tf.keras.optimizers.Adam(), loss_fn)
    x = tf.constant([[1.0], [2.0], [3.0]], dtype=tf.float32)
    y = tf.constant([[2.0], [4.0], [6.0]], dtype=tf.float32)
    return Workload("article", "article's train step (Dense(1), Adam, 3 samples)", step, (x, y), calls)


def mlp(wrap_loss: Wrap | None = None) -> Workload:
    """784 -> 512 -> 512 -> 10, ReLU, Adam, batch 128."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(784,)),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    loss_fn, calls = _loss(tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), wrap_loss)
    step = _train_step(model, tf.keras.optimizers.Adam(), loss_fn)
    x = tf.random.normal((128, 784), seed=1)
    y = tf.random.uniform((128,), maxval=10, dtype=tf.int32, seed=2)
    return Workload("mlp", "512-wide MLP train step (784-512-512-10, batch 128)", step, (x, y), calls)


def conv(wrap_loss: Wrap | None = None) -> Workload:
    """Conv(16)-Pool-Conv(32)-Pool-Dense(10) on 28x28x1, Adam, batch 32."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(28, 28, 1)),
        tf.keras.layers.Conv2D(16, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10),
    ])
    loss_fn, calls = _loss(tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), wrap_loss)
    step = _train_step(model, tf.keras.optimizers.Adam(), loss_fn)
    x = tf.random.normal((32, 28, 28, 1), seed=1)
    y = tf.random.uniform((32,), maxval=10, dtype=tf.int32, seed=2)
    return Workload("conv", "small conv train step (2 conv + dense, 28x28, batch 32)", step, (x, y), calls)


def py_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a loss: tensors in, one float32 scalar out) run through `tf.py_function`.

    TF's own way to run a Python body eagerly inside a graph, with gradients to
    its tensor inputs: the anchor an eager island is measured against. Integer
    inputs (labels) go in as float32 and are cast back inside: `tf.py_function`'s
    gradient fails on an integer input ("Cannot convert 0.0 to EagerTensor of
    dtype int32"), the usual workaround, two tiny ops.
    """
    import tensorflow as tf

    def through_py_function(*args: Any) -> Any:
        dtypes = [a.dtype for a in args]

        def body(*xs: Any) -> Any:
            return fn(*[tf.cast(x, d) if d.is_integer else x for x, d in zip(xs, dtypes, strict=True)])

        out = tf.py_function(body, [tf.cast(a, tf.float32) if a.dtype.is_integer else a for a in args],
                             Tout=tf.float32)
        out.set_shape([])
        return out

    return through_py_function


def distill(wrap_loss: Wrap | None = None) -> Workload:
    """Knowledge distillation (the Keras tutorial's `Distiller.train_step`, on MLPs).

    A frozen teacher (784-512-512-10) and a student (784-64-10) on a batch of
    64; the loss, the island, takes the labels and both models' logits:
    0.1 x cross-entropy + 0.9 x T^2 x KL(teacher || student) at temperature 3.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    teacher = tf.keras.Sequential([
        tf.keras.Input(shape=(784,)),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(512, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    student = tf.keras.Sequential([
        tf.keras.Input(shape=(784,)),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10),
    ])
    ce = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    kl = tf.keras.losses.KLDivergence()
    alpha, temperature = 0.1, 3.0
    calls: list[int] = []
    tick = calls.append

    def distillation_loss(y: Any, student_logits: Any, teacher_logits: Any) -> Any:
        tick(1)
        soft = kl(tf.nn.softmax(teacher_logits / temperature), tf.nn.softmax(student_logits / temperature))
        return alpha * ce(y, student_logits) + (1 - alpha) * soft * temperature**2

    loss_fn = wrap_loss(distillation_loss) if wrap_loss is not None else distillation_loss
    optimizer = tf.keras.optimizers.Adam()

    def step(x: Any, y: Any) -> Any:
        teacher_logits = teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = student(x, training=True)
            loss = loss_fn(y, student_logits, teacher_logits)
        gradients = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(gradients, student.trainable_variables, strict=True))
        return loss

    x = tf.random.normal((64, 784), seed=1)
    y = tf.random.uniform((64,), maxval=10, dtype=tf.int32, seed=2)
    return Workload("distill", "distillation train step (teacher 784-512-512-10, student 784-64-10, "
                    "batch 64)", tf.function(step), (x, y), calls)
