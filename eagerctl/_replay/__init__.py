"""`replay()`: compiled steps at full speed; the one that fails is run again eagerly, op by op.

The package, one idea per module, imports running one way (top to bottom):

- `scope`: the `replay()` object (context manager and decorator), its
  per-context activations, and the patch of `Function.__call__` that exists
  only while at least one replay is active somewhere.
- `call`: one monitored call of a compiled `tf.function`: snapshot, run,
  check, and on failure the sequence restore, replay, put back, raise.
- `state`: what a call writes (variables, iterators), kept and put back.
- `rerun`: the eager replay itself, with the per-op check that finds the line.
- `report`: `ReplayError` and its message.

Nothing here imports TensorFlow until a replay is entered.
"""

from __future__ import annotations

from .report import ReplayError
from .scope import Replay, replay

__all__ = ["Replay", "ReplayError", "replay"]
