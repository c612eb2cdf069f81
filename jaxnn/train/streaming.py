"""``Trainer``'s entry points for streamed data: ``fit``, ``evaluate`` and ``predict``
on a stream of batches (:mod:`jaxnn.stream`), and the placement of each process's
batches on a mesh.

:class:`Streaming` is a part of :class:`~jaxnn.Trainer` kept in its own file (the
trainer inherits it): the in-memory paths live in ``trainer.py``, the streamed ones
here. Its methods use the trainer's compiled programs (``_chunk``, ``_evaluate``,
``_predict``) and its epoch loop (``_fit_per_epoch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxnn import stream as stream_lib
from jaxnn._checks import check_positive_int
from jaxnn.confusion_metrics import merge_sums
from jaxnn.data import Data
from jaxnn.train.guard import new_guard
from jaxnn.train.programs import TrainState, finish

__all__ = ["Streaming"]


class Streaming:
    """The streamed half of :class:`~jaxnn.Trainer` (see the module's docstring)."""

    def _fit_stream(self, state: TrainState, source: Any, y: Any, **settings: Any) -> tuple:
        """``fit`` on a stream of batches: chunks of steps, prefetched, epoch by epoch."""
        where = "Trainer.fit"
        if y is not None:
            raise ValueError(
                f"{where}: x is a stream of batches, so the targets come in each batch "
                "as (x, y) or (x, y, sample_weight); pass y=None (or fit(state, stream))."
            )
        if settings.pop("sample_weight") is not None or settings.pop("validation_split"):
            raise ValueError(
                f"{where}: with a stream, sample_weight comes in each batch (x, y, w) and "
                "validation_split cannot cut a stream; pass validation_data."
            )
        steps = settings.pop("steps_per_epoch")
        if steps is not None:
            steps = check_positive_int(where, "steps_per_epoch", steps)
        given_k = settings.pop("steps_per_execution")
        if given_k is not None:
            given_k = check_positive_int(where, "steps_per_execution", given_k)
        self._check_processes(where, steps)
        # The first batch gives the shapes for the checks and the plan.
        batch, first = stream_lib.first_batch(where, source)
        settings.setdefault("class_weight", None)  # refused for streams by fit itself
        plan = self._plan(
            state,
            batch[0],
            batch[1],
            sample_weight=batch[2],
            batch_size=int(batch[2].shape[0]),
            shuffle=False,
            validation_split=0.0,
            **settings,
        )
        plan.examples, plan.steps = 0, steps  # the stream decides how many
        plan.position = stream_lib.Position(source)
        k = stream_lib.steps_per_chunk(sum(a.nbytes for a in jax.tree.leaves(batch)), given_k)
        state = self._place_state(state)
        unread = [first]  # epoch 0's iterator, its first batch already read
        buffers = stream_lib.ChunkBuffers()  # the chunks' host arrays, kept across epochs

        def epoch_source(epoch: int) -> Iterator[Any]:
            head = unread.pop() if unread else None
            if (
                head is not None
                and not plan.position.moved
                and (epoch == 0 or isinstance(source, Iterator))
            ):
                return head  # a one-pass iterator reads on, the peeked batch first
            return stream_lib.epoch_batches(where, source, epoch)

        def run_epoch(state: TrainState, epoch: int) -> tuple:
            next_key, _, dropout_key = jax.random.split(state.key, 3)
            watch = self._watches(plan.policy)
            policy = "watch" if watch else plan.policy
            guard = None if policy in (None, "watch") else new_guard(state.params)
            total, start = None, 0
            chunks = stream_lib.chunks(where, epoch_source(epoch), k, steps=steps, buffers=buffers)
            in_flight = stream_lib.InFlight()
            # Under "watch" (see Trainer._run_plan) each chunk runs unguarded and says
            # whether it ended finite; the host reads that as it waits on the chunk
            # anyway (InFlight), so the chunks in flight keep their start state and
            # arrays until then. The first chunk that did not end finite holds the
            # first bad step: it runs again guarded, from its start state.
            pending: list[tuple] = []
            bad = None
            placed = stream_lib.prefetch(chunks, self._place_chunk)
            try:
                for arrays in placed:
                    before = state
                    state, guard, sums = self._chunk(
                        state, arrays, np.int32(start), dropout_key, guard, policy=policy
                    )
                    in_flight.add(sums)
                    total = sums if total is None else merge_sums(total, sums)
                    if watch:
                        pending.append((before, arrays, start, guard))
                        bad = _first_unfinished(pending, keep=in_flight.depth)
                        guard = None
                        if bad is not None:
                            break
                    start += k
                if watch and bad is None:
                    bad = _first_unfinished(pending, keep=0)
            finally:
                placed.close()
            if bad is not None:
                before, arrays, start, _ = bad
                state, guard, total = self._chunk(
                    before,
                    arrays,
                    np.int32(start),
                    dropout_key,
                    new_guard(before.params),
                    policy="raise",
                )
            if guard is None or not bool(guard.halted):  # a halted state stays as it was
                state = state._replace(key=next_key)
            logs = finish(total)
            if plan.val is not None:
                val_sums = self._evaluate(
                    state.params, state.model_state, plan.val, batch_size=plan.batch_size
                )
                logs.update({f"val_{name}": v for name, v in finish(val_sums).items()})
            logs = {name: jnp.reshape(v, (1,)) for name, v in logs.items()}
            facts = {}
            if guard is not None:
                facts = {"skipped": guard.skipped[None], "halted": guard.halted[None]}
            return state, logs, facts, guard

        return self._fit_per_epoch(state, plan, run_epoch)

    def _check_processes(self, where: str, steps: int | None) -> None:
        """Several processes must run the same number of steps, or a collective hangs."""
        if jax.process_count() > 1 and steps is None:
            raise ValueError(
                f"{where}: with {jax.process_count()} processes each streams its own "
                "batches, and every process must run the same number of steps (a process "
                "that ends early leaves the others waiting); pass steps_per_epoch (and "
                "validation_steps, steps for evaluate)."
            )

    def _place_chunk(self, chunk: stream_lib.Chunk) -> tuple:
        """A chunk's arrays on the device (on the mesh under data parallelism). With
        several processes each gives its own examples of every batch, and a batch
        becomes one global array split over all processes' devices."""
        arrays = (chunk.x, chunk.y, chunk.weight, chunk.mask)
        return self._place_local(arrays, batch_axis=1)

    def _place_local(self, tree: Any, batch_axis: int) -> Any:
        """This process's rows of a batch, placed: whole on one device, replicated on
        a mesh (the program splits it), or, with several processes, as their
        concatenation along ``batch_axis``, split over the mesh axis."""
        if self.parallel is None:
            return jax.device_put(tree)
        if jax.process_count() == 1:
            return self._place_data(tree)
        spec = PartitionSpec(*([None] * batch_axis), self.parallel.axis)
        sharding = NamedSharding(self.parallel.mesh, spec)

        def place(a: Any) -> jax.Array:
            try:
                return jax.make_array_from_process_local_data(sharding, np.asarray(a))
            except ValueError as e:
                raise ValueError(
                    f"Trainer: this process's batch of {np.shape(a)[batch_axis]} examples "
                    f"cannot be split over its devices of mesh axis {self.parallel.axis!r} "
                    f"({e}). With several processes, each process's batch size must be a "
                    "multiple of its number of devices on that axis."
                ) from None

        return jax.tree.map(place, tree)

    def _stream_chunks(
        self, where: str, state: TrainState, source: Any, steps: int | None, epoch: int
    ) -> tuple[int, Iterator[Any]]:
        """For evaluate and predict: the batch size, and the stream's batches flattened
        into chunks ``(x, y, weight)`` of ``k * batch`` examples (padding at weight 0),
        placed and prefetched."""
        self._check_processes(where, steps)
        batch, batches = stream_lib.first_batch(where, source, epoch)
        self._check_targets(state, batch[0], batch[1])
        size = int(batch[2].shape[0])
        k = stream_lib.steps_per_chunk(sum(a.nbytes for a in jax.tree.leaves(batch)), None)

        def flat(chunk: stream_lib.Chunk) -> Data:
            join = lambda a: a.reshape(-1, *a.shape[2:])
            weight = join(chunk.weight * chunk.mask)
            return self._place_local(Data(*jax.tree.map(join, (chunk.x, chunk.y)), weight), 0)

        chunks = stream_lib.chunks(where, batches, k, steps=steps)
        return size, stream_lib.prefetch(chunks, flat)

    def _evaluate_stream(
        self, where: str, state: TrainState, source: Any, steps: int | None, *, epoch: int = 0
    ) -> dict[str, float]:
        """The loss and metrics over a stream: sums of every chunk, finished at the end."""
        size, placed = self._stream_chunks(where, state, source, steps, epoch)
        total = None
        for data in placed:
            sums = self._evaluate(
                state.params, state.model_state, data, batch_size=size * jax.process_count()
            )
            total = sums if total is None else merge_sums(total, sums)
        return {k: float(v) for k, v in jax.device_get(finish(total)).items()}

    def _check_stream_arguments(
        self, where: str, x: Any, y: Any, steps: int | None, sample_weight: Any
    ) -> int | None:
        """``steps`` checked; for a stream, no separate ``y`` or weights; for arrays,
        no ``steps``."""
        if not stream_lib.is_stream(x):
            if steps is not None:
                raise ValueError(
                    f"{where}: steps={steps} is for streamed data (an iterator, generator "
                    "or function of batches); arrays are read whole. Drop steps, or pass "
                    "a stream."
                )
            return None
        if y is not None or sample_weight is not None:
            raise ValueError(
                f"{where}: x is a stream of batches, so targets and weights come in each "
                "batch as (x, y) or (x, y, sample_weight); pass y=None and no "
                "sample_weight."
            )
        return None if steps is None else check_positive_int(where, "steps", steps)

    def _predict_stream(self, where: str, state: TrainState, source: Any, steps: int | None) -> Any:
        """Outputs over a stream, chunk by chunk; padding rows are dropped on the host."""
        size, placed = self._stream_chunks(
            where, state, stream_lib.inputs_only(_once(where, source)), steps, 0
        )
        parts = []
        for data in placed:
            out = self._predict(
                state.params, state.model_state, data.x, batch_size=size * jax.process_count()
            )
            rows, real = _own_rows(data.weight)
            parts.append(jax.tree.map(lambda a, r=rows, m=real: np.asarray(a)[r][m], out))
        return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def _once(where: str, source: Any) -> Iterator[Any]:
    """One pass over a stream (epoch 0 of a function or ``iter_epoch`` source)."""
    return stream_lib.epoch_batches(where, source, 0)


def _own_rows(placed: jax.Array) -> tuple[slice, np.ndarray]:
    """The rows of a flattened chunk that this process gave (all of them, with one
    process) and which of those are real examples (padding has weight 0)."""
    if placed.is_fully_addressable:
        return slice(None), np.asarray(placed) != 0
    shards = {s.index[0].start or 0: s for s in placed.addressable_shards}
    mine = [shards[start] for start in sorted(shards)]
    rows = slice(min(shards), max(s.index[0].stop for s in mine))
    return rows, np.concatenate([np.asarray(s.data) for s in mine]) != 0


def _first_unfinished(pending: list[tuple], *, keep: int) -> tuple | None:
    """Checks the oldest watched chunks until at most ``keep`` are left unchecked;
    each ``(start state, arrays, start step, ended finite)``. Returns the first that
    did not end finite (the rest are dropped), or ``None``."""
    while len(pending) > keep:
        chunk = pending.pop(0)
        if not bool(chunk[3]):
            pending.clear()
            return chunk
    return None
