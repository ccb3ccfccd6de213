"""The one train loop: a jitted Optax step, divergence recorded (never raised), cheap logging,
resumable run directories, and data-parallel or multi-worker training over a device mesh.

Every experiment of the toolkit (the quadratic case studies of [Zhang24, §3.1] and [Tomihari25, App. D.9], the rotated quadratic of [Xie24, §4.1], the sign-method sweeps of [SignMomentum25, App. E],
the LN-placement and nanoGPT runs of [Tomihari25, §4.7 / App. D.10]) runs through `train`.

One step is one compiled program (``jax.jit``; parameters and optimizer state are donated
on accelerators, where donation is implemented): loss and gradient by
``jax.value_and_grad``, the Optax update, and the per-step diagnostics — ℓ2 and ℓ1 gradient
norms ([SignMomentum25, App. E] tracks both) and, given a partition, the block gradient norms
``G_b = ‖[g]_b‖₂``. The Gini coefficient of ``G_b/√P_b`` [Tomihari25, App. C.2, D.5] is
formed on the host from the logged norms (`heterogeneity.metrics.gini`, batched over the
logged steps), which keeps sorting out of the step. Shapes never change, so the step
compiles once.

Divergence. Step ``t`` is bad when its loss, gradient or new parameters are not finite, or
when its loss exceeds ``divergence_factor · |L_0|`` (``L_0`` the step-0 loss; default 10³,
``None`` disables it, skipped when ``L_0 = 0``): a loss of 10³² is a blow-up even while
finite. The step carries a device flag ``alive``; a bad step clears it, and a step with the
flag cleared leaves parameters and optimizer state unchanged (a select inside the step).
The host checks the flags every ``log_every`` steps and before every eval and checkpoint
(one device sync per check, not per step); at the first bad step ``d`` the run stops with
``status="diverged"``, ``diverged_step=d``, ``final["diverged_loss"]`` and the history up
to ``d``, and returns the state after step ``d-1``: bit-identical to a clean run of
``num_steps=d``, whatever ``log_every`` is.

Workers. Majority-vote optimizers ([SignMomentum25, Algorithm 2] and its baselines) reduce over a
named axis (`heterogeneity.optim._majority_vote`). With ``num_workers=W`` worker ``j`` takes
the ``j``-th of W contiguous shards of the batch, computes its gradient and updates its own
optimizer state (a leading worker axis); the server update, identical on every worker after
the vote, moves the shared parameters. Without a mesh the workers are simulated by
``jax.vmap(axis_name=axis_name)``; with ``mesh`` they are real, one per device of mesh axis
``axis_name`` under ``jax.shard_map``. The votes are integers, so the parameters agree bit
for bit with the simulation as long as no vote changes; the per-worker gradients come from
one batched program under vmap and from W unbatched ones on devices, whose sums XLA orders
differently, so momentum and the logged metrics agree to float32 rounding.

Data parallelism. ``mesh`` without ``num_workers``: the batch's leading axis is sharded over
every mesh device, parameters and optimizer state are replicated, and the unchanged step is
compiled for the mesh (``jit`` with in/out shardings; XLA adds the all-reduce). It computes
the single-device function; only the summation order of the cross-device reductions
differs (float32 rounding: within 5e-7 of each leaf's scale after 20 Adam steps in the tests).

Resumable runs. With ``run_dir`` (files: `heterogeneity.experiment._checkpoint.RunDir`) the
run appends ``metrics.jsonl`` — a JSON line per logged step (``{"kind": "train", "step",
"loss", "grad_norm", "grad_l1"[, "block_norms"]}``), per eval (``{"kind": "eval",
"eval_step", "eval_<name>"...}``) and a last ``{"kind": "end", "status", "diverged_step",
"final"}``, flushed as written, in canonical order (by step, an eval before the train line
of its step), so the log is a function of the history (`_log_bytes`). Every
``checkpoint_every`` steps and at the end it saves params, optimizer state (PRNG keys
included), ``L_0``, the history and the data position ``t`` (the next batch is
``batches(t, fold_in(key, t))``, or item ``t`` of a recreated iterator); ``key``, settings,
shapes, digests of the initial state and first batch and the hash of the step's program
(which catches a changed learning rate) form the run's fingerprint, and a run_dir with
another one is refused. The log is fsynced before each checkpoint, and a checkpoint is one
atomic file, so after a kill at any moment the newest checkpoint is whole and the log holds
its lines. A restart with the same arguments loads the newest checkpoint that passes its
SHA-256 check (a bad one is reported as a `ResumeWarning`, moved aside, and the previous one
tried; with none left the run restarts), cuts the log back to that checkpoint's lines (a log
that does not start with them is reported, moved aside and rewritten) and continues:
params, optimizer state, history and log end bit-identical to an uninterrupted run. A run
that had ended returns its recorded result (``"stopped"`` included) without a step.

Checkpoint format: the toolkit's ``.npz`` store, not orbax-checkpoint. The state lives on
one host (parameters replicated, worker states gathered), so one archive written by one
atomic rename is the simplest way to keep params, optimizer state, history and metadata
consistent with each other and with the log; it is exact for every dtype (bfloat16, PRNG
keys) and needs nothing beyond NumPy. orbax's strengths (asynchronous per-shard writes of
arrays no single host holds) are what a multi-host run would need, which is out of scope.
"""
from __future__ import annotations

import collections.abc
import functools
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from heterogeneity.experiment._checkpoint import RunDir, run_fingerprint
from heterogeneity.experiment._store import jsonl_line, to_jsonable

PyTree = Any

__all__ = ["TrainResult", "train"]


class TrainResult(NamedTuple):
    """Outcome of `train`.

    ``history`` maps names to NumPy arrays logged every ``log_every`` steps: ``step``,
    ``loss`` (the loss at the parameters *before* that step's update), ``grad_norm`` (ℓ2),
    ``grad_l1``; with a partition also ``block_norms`` (num_logs, num_blocks) and ``gini``;
    with an ``eval_fn`` also ``eval_step`` and ``eval_<name>`` (every ``eval_every`` steps
    and at the end). ``status`` is ``"finished"``, ``"diverged"`` (non-finite loss or
    gradient, or a loss above ``divergence_factor · |L_0|``, at step ``diverged_step``) or
    ``"stopped"`` (the callback asked to stop). ``final`` holds scalar summaries: ``steps``
    run, ``min_loss`` (over logged steps), ``final_loss`` (for a fixed batch the loss *at the
    final params*, with ``final_grad_norm`` / ``final_gini``, from one extra evaluation of
    the compiled step; otherwise the last logged mini-batch loss), the last value of every
    eval metric; for a diverged run ``diverged_step`` and ``diverged_loss``.
    ``num_compiles`` is 0 when a finished run was reloaded from its ``run_dir``.
    """

    params: PyTree
    opt_state: PyTree
    history: dict[str, np.ndarray]
    final: dict[str, float]
    status: str
    diverged_step: int | None
    block_labels: tuple[str, ...] | None
    num_compiles: int
    wall_time: float


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _select(ok, new, old):
    if jax.dtypes.issubdtype(jnp.result_type(old), jax.dtypes.prng_key):
        return new  # typed PRNG keys: no arithmetic select; a key is never non-finite
    return jnp.where(ok, new, old).astype(jnp.result_type(old))


def _strong(tree):
    """Arrays with strong (non-weak) dtypes: a weak-typed input (a Python float, ``jnp.asarray(1.0)``)
    would come back strong from the first update and force a second compilation."""
    def strong(x):
        x = jnp.asarray(x)
        return x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else jax.lax.convert_element_type(x, x.dtype)

    return jax.tree.map(strong, tree)


class _Batches:
    """``batches`` as ``source(step) -> batch``.

    A callable is called as ``batches(step, key_step)`` with ``key_step = fold_in(key, step)``;
    an iterator (anything with ``__next__``) is advanced once per step, and a jump ahead
    (a resumed run) skips items, so item ``t`` is always the batch of step ``t``; anything
    else (an array, a dict or tuple of arrays, ``None``) is one fixed batch used at every
    step (full-batch gradient descent). Pass ``iter(list_of_batches)`` to cycle through a list.
    """

    def __init__(self, batches, key):
        self.key, self._held = key, {}
        if callable(batches) and not isinstance(batches, collections.abc.Iterator):
            if key is None:
                raise ValueError("train: batches is a callable (step, key) -> batch, so a PRNG `key` is required")
            self.kind, self._fn = "callable", batches
        elif isinstance(batches, collections.abc.Iterator):
            self.kind, self._it, self._next = "iterator", batches, 0
        else:
            self.kind, self._fixed = "fixed", jax.tree.map(jnp.asarray, batches)

    def __call__(self, step: int):
        if step in self._held:
            return self._held.pop(step)
        if self.kind == "callable":
            return self._fn(step, jax.random.fold_in(self.key, step))
        if self.kind == "fixed":
            return self._fixed
        if step < self._next:
            raise ValueError(f"train: the batch iterator cannot go back to step {step}")
        while True:
            try:
                item = next(self._it)
            except StopIteration:
                raise ValueError(f"train: the batch iterator ran out at step {self._next}; it must yield "
                                 f"num_steps batches") from None
            self._next += 1
            if self._next > step:
                return item

    def peek(self, step: int):
        """The batch of ``step``, kept for the ``source(step)`` call that follows (no second fetch)."""
        if step not in self._held:
            self._held[step] = self(step)
        return self._held[step]


def _split_workers(batch, num_workers: int):
    def split(x):
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] % num_workers:
            raise ValueError(
                f"train: num_workers={num_workers} needs every batch leaf to have a leading axis divisible by "
                f"{num_workers}; got a leaf of shape {x.shape}")
        return x.reshape((num_workers, x.shape[0] // num_workers) + x.shape[1:])
    return jax.tree.map(split, batch)


def _gini_of_block_norms(norms: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Gini of ``G_b/√P_b`` per row of ``norms`` (T, B) [Tomihari25, App. D.5], via `heterogeneity.metrics.gini`."""
    from heterogeneity.metrics import gini

    return np.asarray(gini(np.asarray(norms, np.float64) / np.sqrt(np.asarray(sizes, np.float64))))


class _Layout(NamedTuple):
    """Where the step's arguments live on ``mesh`` (params, optimizer state, batch) and how many
    ways the batch's leading axis is split."""

    params: NamedSharding
    state: NamedSharding
    batch: NamedSharding
    ways: int
    what: str


def _layout(mesh, num_workers, axis_name) -> _Layout | None:
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise ValueError(f"train: mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh((8,), ('data',))), "
                         f"got {type(mesh).__name__}")
    rep = NamedSharding(mesh, PartitionSpec())
    if num_workers is None:  # data parallel: batch over every device, everything else replicated
        axes = tuple(mesh.axis_names)
        return _Layout(rep, rep, NamedSharding(mesh, PartitionSpec(axes)), mesh.size,
                       f"mesh axes {axes} ({mesh.size} devices)")
    if axis_name not in mesh.axis_names:
        raise ValueError(f"train: with num_workers the workers are the devices along mesh axis axis_name="
                         f"{axis_name!r}, but the mesh has axes {tuple(mesh.axis_names)}; build the mesh with an "
                         f"axis named {axis_name!r} or pass the axis_name the optimizer reduces over")
    if mesh.shape[axis_name] != num_workers:
        raise ValueError(f"train: num_workers={num_workers} must equal the size of mesh axis {axis_name!r} "
                         f"({mesh.shape[axis_name]}): one worker per device")
    per_worker = NamedSharding(mesh, PartitionSpec(axis_name))
    return _Layout(rep, per_worker, per_worker, num_workers, f"mesh axis {axis_name!r} ({num_workers} workers)")


def _place_batch(batch, layout: _Layout | None):
    if layout is None:
        return batch

    def check(x):
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] % layout.ways:
            raise ValueError(f"train: the batch is split over {layout.what}, so every batch leaf needs a leading "
                             f"axis divisible by {layout.ways}; got a leaf of shape {x.shape}")
        return x

    return jax.device_put(jax.tree.map(check, batch), layout.batch)


def _make_step(loss_fn, optimizer, partition, num_workers, axis_name, divergence_factor, mesh):
    """The step ``(params, opt_state, alive, loss0, batch) -> (params, opt_state, alive, loss0, metrics)``.

    ``alive`` is true while every step so far was good; once cleared the step changes nothing.
    ``loss0`` (float32, NaN until step 0 ran) is the reference of the divergence threshold."""
    vg = jax.value_and_grad(loss_fn)

    def single(params, opt_state, batch):
        loss, grads = vg(params, batch)
        updates, new_state = optimizer.update(grads, opt_state, params)
        return loss, grads, updates, new_state

    def simulated(params, opt_state, batch):  # W workers vmapped on one device
        losses, worker_grads = jax.vmap(vg, in_axes=(None, 0))(params, _split_workers(batch, num_workers))
        worker_updates, new_state = jax.vmap(
            optimizer.update, in_axes=(0, 0, None), axis_name=axis_name)(worker_grads, opt_state, params)
        grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), worker_grads)
        return jnp.mean(losses), grads, jax.tree.map(lambda u: u[0], worker_updates), new_state

    def one_worker(params, opt_state, batch):  # this device's worker under shard_map
        loss, grads = vg(params, batch)
        updates, new_state = optimizer.update(grads, jax.tree.map(lambda x: x[0], opt_state), params)
        loss, grads = jax.lax.pmean((loss, grads), axis_name)  # metrics; the optimizer saw this worker's gradient
        return loss, grads, updates, jax.tree.map(lambda x: x[None], new_state)

    if num_workers is None:
        core = single
    elif mesh is None:
        core = simulated
    else:
        w = PartitionSpec(axis_name)
        # the server update is identical on every worker (integer vote totals, a server key shared by
        # all workers), so it leaves as replicated; check_vma cannot see that through the state's keys
        core = jax.shard_map(one_worker, mesh=mesh, in_specs=(PartitionSpec(), w, w),
                             out_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(), w), check_vma=False)

    def step(params, opt_state, alive, loss0, batch):
        loss, grads, updates, new_state = core(params, opt_state, batch)
        new_params = optax.apply_updates(params, updates)
        ok = alive & jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
        if divergence_factor is not None:
            loss0 = jnp.where(jnp.isnan(loss0), loss.astype(loss0.dtype), loss0)
            ok = ok & ((loss <= divergence_factor * jnp.abs(loss0)) | (loss0 == 0))
        # keep the last good iterate; cast back so that the carried types never change (no recompiles)
        keep = lambda new, old: jax.tree.map(functools.partial(_select, ok), new, old)  # noqa: E731
        metrics = {
            "loss": loss,
            "ok": ok,
            "grad_norm": optax.tree.norm(grads),
            "grad_l1": sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads)),
        }
        if partition is not None:  # the Gini is formed on the host from the logged norms (cheaper step)
            metrics["block_norms"] = jnp.sqrt(partition.block_sq_norms(grads))
        return keep(new_params, params), keep(new_state, opt_state), ok, loss0, metrics

    return step


def _eval_dict(value) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {"loss": value}


def _canonical(record: dict) -> dict:
    """Key order of a log line: ``kind``, its step, then the rest sorted (nested dicts sorted too)."""
    head = [k for k in ("kind", "step", "eval_step", "status") if k in record]
    rest = sorted(k for k in record if k not in head)
    return {k: dict(sorted(record[k].items())) if isinstance(record[k], dict) else record[k] for k in head + rest}


def _records(logs: dict, evals: dict) -> list[dict]:
    """The log's train and eval records in canonical order: by step, an eval before the train line of its step."""
    keyed = [((int(s), 1, i), {"kind": "train", **{k: v[i] for k, v in logs.items()}})
             for i, s in enumerate(logs.get("step", []))]
    keyed += [((int(s), 0, i), {"kind": "eval", **{k: v[i] for k, v in evals.items()}})
              for i, s in enumerate(evals.get("eval_step", []))]
    return [r for _, r in sorted(keyed, key=lambda kr: kr[0])]


def _end_record(status, diverged_step, final) -> dict:
    return {"kind": "end", "status": status, "diverged_step": diverged_step, "final": final}


def _log_bytes(logs: dict, evals: dict, end: dict | None = None) -> bytes:
    """``metrics.jsonl`` as a function of the history: what an uninterrupted run has written."""
    records = _records(logs, evals) + ([end] if end is not None else [])
    return b"".join(jsonl_line(_canonical(r), sort_keys=False) for r in records)


def _from_json_float(v):
    return float(v) if isinstance(v, str) and v in ("nan", "inf", "-inf") else v


def _history(logs: dict, evals: dict, block_sizes) -> dict[str, np.ndarray]:
    history = {k: np.asarray(v) for k, v in logs.items()}
    if block_sizes is not None and "block_norms" in history:
        history["gini"] = _gini_of_block_norms(history["block_norms"], block_sizes)
    history.update({k: np.asarray(v) for k, v in evals.items()})
    return history


def _check_int(name: str, value, minimum: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"train: {name} must be {'None or ' if optional else ''}an int >= {minimum}, got {value!r}")


def train(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    optimizer: optax.GradientTransformation,
    batches: Any = None,
    *,
    num_steps: int,
    key: jax.Array | None = None,
    eval_fn: Callable[[PyTree], Any] | None = None,
    eval_every: int | None = None,
    log_every: int = 1,
    partition: Any = None,
    callback: Callable[[int, PyTree, dict], Any] | None = None,
    num_workers: int | None = None,
    axis_name: str = "workers",
    donate: bool | None = None,
    divergence_factor: float | None = 1e3,
    mesh: Mesh | None = None,
    run_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    settings: dict | None = None,
) -> TrainResult:
    """Minimise ``loss_fn(params, batch)`` with an Optax ``optimizer`` for ``num_steps`` steps.

    Args:
      loss_fn: ``(params, batch) -> scalar``, jit-able.
      params: initial parameters (not modified; a copy is trained).
      optimizer: any ``optax.GradientTransformation`` (e.g. ``heterogeneity.optim.get(...)``).
      batches: ``(step, key) -> batch`` callable, an iterator of batches, or one fixed batch
        (array / pytree / ``None``) reused every step (full-batch GD on `heterogeneity.problems`).
      num_steps: number of optimizer steps.
      key: PRNG key for a callable ``batches`` (step ``t`` gets ``fold_in(key, t)``).
      eval_fn: ``params -> scalar | dict of scalars`` (jit-able), logged every ``eval_every``
        steps (default: ``log_every``), before step 0 and at the end.
      log_every: history stride; steps ``0, log_every, ...`` and the last step are logged.
        It is also the stride of the divergence check (one device sync per check).
      partition: a `heterogeneity.partition.Partition`; logs block gradient norms and Gini.
      callback: ``callback(step, params, metrics)`` on the host at logged steps; return
        ``True`` to stop (status ``"stopped"``). ``params`` may be donated by the next step:
        copy what you keep.
      num_workers: W workers for multi-worker (majority-vote) optimizers: simulated with vmap,
        or one per device of mesh axis ``axis_name`` with ``mesh`` (module docstring); the
        batch's leading axis must be divisible by W.
      axis_name: the worker axis the multi-worker optimizer reduces over (its ``axis_name``).
      donate: donate params/state buffers to the step (default: on non-CPU backends).
      divergence_factor: a step whose loss exceeds ``divergence_factor · |L_0|`` (``L_0`` the
        step-0 loss) counts as diverged, like a non-finite one; ``None`` disables the test.
      mesh: a ``jax.sharding.Mesh``: data-parallel training with the batch's leading axis
        sharded over all its devices (params and optimizer state replicated), or with
        ``num_workers`` one worker per device along ``axis_name`` (``jax.shard_map``).
      run_dir: a directory that makes the run resumable: metrics appended to
        ``metrics.jsonl``, checkpoints, and a restart with the same arguments continues from
        the last good checkpoint (module docstring). A run_dir written by a run with other
        settings is refused (`heterogeneity.experiment._checkpoint.RunDirMismatch`).
      checkpoint_every: with ``run_dir``, checkpoint every that many steps (``None``: only
        the final state, so a killed run restarts from step 0). May change between restarts.
      settings: JSON-able description of the run (e.g. the sweep's hyperparameters) stored in
        ``run_dir/run.json`` and compared on restart, so a mismatch is named by key.
    """
    _check_int("num_steps", num_steps, 0)
    _check_int("log_every", log_every, 1)
    eval_every = log_every if eval_every is None else eval_every
    _check_int("eval_every", eval_every, 1)
    _check_int("num_workers", num_workers, 1, optional=True)
    _check_int("checkpoint_every", checkpoint_every, 1, optional=True)
    if checkpoint_every is not None and run_dir is None:
        raise ValueError(f"train: checkpoint_every={checkpoint_every} needs a run_dir to write the checkpoints to")
    real = (int, float, np.integer, np.floating)
    if divergence_factor is not None and (isinstance(divergence_factor, bool) or not isinstance(divergence_factor, real)
                                          or not np.isfinite(divergence_factor) or divergence_factor < 1):
        raise ValueError(f"train: divergence_factor must be None or a finite number >= 1 (the multiple of the "
                         f"step-0 loss beyond which a run counts as diverged), got {divergence_factor!r}")
    if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
        raise ValueError(f"train: optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    layout = _layout(mesh, num_workers, axis_name)
    source = _Batches(batches, key)
    t0 = time.perf_counter()

    if donate is None:
        donate = jax.default_backend() != "cpu"
    copy = (lambda tree: jax.tree.map(jnp.copy, tree)) if donate else (lambda tree: tree)  # noqa: E731
    params = _strong(copy(params))  # the caller's params must survive donation
    opt_state = optimizer.init(params)
    if num_workers is not None:
        opt_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_workers,) + jnp.shape(x)), opt_state)
    opt_state = _strong(opt_state)
    place = (lambda p, s: (p, s)) if layout is None else (  # noqa: E731
        lambda p, s: (jax.device_put(p, layout.params), jax.device_put(s, layout.state)))
    params, opt_state = place(params, opt_state)
    shardings = {} if layout is None else dict(
        in_shardings=(layout.params, layout.state, layout.params, layout.params, layout.batch),
        out_shardings=(layout.params, layout.state, layout.params, layout.params, layout.params))
    step_fn = jax.jit(_make_step(loss_fn, optimizer, partition, num_workers, axis_name, divergence_factor, mesh),
                      donate_argnums=(0, 1) if donate else (), **shardings)
    eval_jit = jax.jit(eval_fn) if eval_fn is not None else None
    block_labels = tuple(partition.labels(params)) if partition is not None else None
    block_sizes = np.asarray(partition.layout(params).sizes) if partition is not None else None
    fixed = source.kind == "fixed"
    fixed_batch = _place_batch(source(0), layout) if fixed else None

    def fetch(step):
        return fixed_batch if fixed else _place_batch(source(step), layout)

    logs: dict[str, list] = collections.defaultdict(list)
    evals: dict[str, list] = collections.defaultdict(list)
    pending: list[tuple[int, dict]] = []  # device metrics awaiting the next host check
    status, diverged_step, diverged_loss, last_loss = "finished", None, None, None
    alive = jnp.asarray(True)  # on device: no host sync between checks
    loss0 = jnp.asarray(jnp.nan, jnp.float32)  # the step-0 loss, once step 0 ran
    if layout is not None:  # committed like the step's outputs, or step 2 would compile again
        alive, loss0 = jax.device_put((alive, loss0), layout.params)
    start, run, log = 0, None, None

    if run_dir is not None:
        first = fixed_batch if fixed else _place_batch(source.peek(0), layout)
        mesh_info = None if mesh is None else {"axes": list(mesh.axis_names),
                                               "shape": [int(mesh.shape[a]) for a in mesh.axis_names]}
        fingerprint, program = run_fingerprint(
            jaxprs=[step_fn.trace(params, opt_state, alive, loss0, first).jaxpr]
            + ([eval_jit.trace(params).jaxpr] if eval_jit is not None else []), params=params, opt_state=opt_state,
            key=key, first_batch=first, settings=settings, train_args=dict(
                num_steps=int(num_steps), log_every=int(log_every), eval_every=int(eval_every),
                eval_fn=eval_fn is not None, divergence_factor=divergence_factor, num_workers=num_workers,
                axis_name=axis_name if num_workers is not None else None, mesh=mesh_info, batches=source.kind,
                partition=list(block_labels) if block_labels is not None else None))
        run = RunDir(run_dir, fingerprint, program=program)
        run.check_settings()
        got = run.latest({"params": params, "opt_state": opt_state, "carry": {"loss0": loss0}})
        run.write_settings()
        if got is not None:
            trees, arrays, meta = got
            params, opt_state = place(trees["params"], trees["opt_state"])
            loss0 = trees["carry"]["loss0"]
            loss0 = loss0 if layout is None else jax.device_put(loss0, layout.params)
            start = int(meta["step"])
            for name, a in arrays.items():
                (logs if name.startswith("log/") else evals)[name.split("/", 1)[1]] = list(a)
            if meta.get("status") is not None:  # the run had ended: its recorded result
                final = {k: _from_json_float(v) for k, v in meta["final"].items()}
                run.open_log(_log_bytes(logs, evals, _end_record(meta["status"], meta["diverged_step"], final))).close()
                return TrainResult(
                    params=params, opt_state=opt_state, history=_history(logs, evals, block_sizes), final=final,
                    status=meta["status"], diverged_step=meta["diverged_step"], block_labels=block_labels,
                    num_compiles=int(step_fn._cache_size()), wall_time=time.perf_counter() - t0)
        log = run.open_log(_log_bytes(logs, evals))

    def emit(record):
        if log is not None:
            log.append(_canonical(record), sort_keys=False)

    def save(step: int | None, meta: dict) -> None:
        log.sync()  # the checkpoint vouches for these lines: they must be on disk first
        arrays = {f"log/{k}": np.asarray(v) for k, v in logs.items()}
        arrays.update({f"eval/{k}": np.asarray(v) for k, v in evals.items()})
        run.save(step, {"params": params, "opt_state": opt_state, "carry": {"loss0": loss0}}, arrays, meta)

    def run_eval(step):
        record = {"kind": "eval", "eval_step": step}
        evals["eval_step"].append(step)
        for name, v in _eval_dict(eval_jit(params)).items():
            evals[f"eval_{name}"].append(np.asarray(v))
            record[f"eval_{name}"] = evals[f"eval_{name}"][-1]
        emit(record)

    def flush() -> tuple[int, float] | None:
        """Move pending metrics to the host; return the first bad step and its loss, if any."""
        nonlocal pending
        bad = None
        for step, m in jax.device_get(pending):
            if not bool(m["ok"]):
                bad = step, float(m["loss"])
                break
            if step % log_every == 0 or step == num_steps - 1:
                logs["step"].append(step)
                for name, v in m.items():
                    if name != "ok":
                        logs[name].append(v)
                emit({"kind": "train", "step": step, **{n: v for n, v in m.items() if n != "ok"}})
        pending = []
        return bad

    try:
        if eval_jit is not None and start == 0:
            run_eval(0)
        step = start
        for step in range(start, num_steps):
            params, opt_state, alive, loss0, metrics = step_fn(params, opt_state, alive, loss0, fetch(step))
            pending.append((step, metrics))
            at_log = step % log_every == 0 or step == num_steps - 1
            at_eval = eval_jit is not None and (step + 1) % eval_every == 0 and step + 1 < num_steps
            at_ckpt = checkpoint_every is not None and (step + 1) % checkpoint_every == 0 and step + 1 < num_steps
            if at_log or at_eval or at_ckpt:  # evals and checkpoints never see a state past a bad step
                bad = flush()
                if bad is not None:
                    status, (diverged_step, diverged_loss) = "diverged", bad
                    break
                if at_log and callback is not None:
                    if callback(step, params, {k: v[-1] for k, v in logs.items()}) is True:
                        status = "stopped"
                        break
            if at_eval:
                run_eval(step + 1)
            if at_ckpt:
                save(step + 1, {"step": step + 1, "status": None})
        else:
            step = num_steps
        steps_run = diverged_step if status == "diverged" else (step + 1 if status == "stopped" else num_steps)

        final: dict[str, float] = {"steps": int(steps_run)}
        if status != "diverged" and num_steps > 0:
            if fixed:  # loss and gradient at the final params: one more (compiled) step, update discarded
                _, _, _, _, m = jax.device_get(
                    step_fn(copy(params), copy(opt_state), jnp.asarray(True), loss0, fetch(steps_run)))
                last_loss = float(m["loss"])
                final["final_grad_norm"] = float(m["grad_norm"])
                if "block_norms" in m:
                    final["final_gini"] = float(_gini_of_block_norms(m["block_norms"][None], block_sizes)[0])
            else:
                last_loss = float(logs["loss"][-1])
        if eval_jit is not None and status != "diverged":
            run_eval(steps_run)
        history = _history(logs, evals, block_sizes)
        if "loss" in history and history["loss"].size:
            final["min_loss"] = float(np.min(history["loss"]))
        final["final_loss"] = last_loss if last_loss is not None else float("nan")
        for k, v in evals.items():
            if k != "eval_step" and np.ndim(v[-1]) == 0:
                final[k] = float(v[-1])
        if status == "diverged":
            final["diverged_step"] = int(diverged_step)
            final["diverged_loss"] = diverged_loss
        if run is not None:
            emit(_end_record(status, diverged_step, final))
            save(None, {"step": int(steps_run), "status": status, "diverged_step": diverged_step,
                        "final": to_jsonable(final)})
    finally:
        if log is not None:
            log.close()
    return TrainResult(
        params=params, opt_state=opt_state, history=history, final=final, status=status,
        diverged_step=diverged_step, block_labels=block_labels, num_compiles=int(step_fn._cache_size()),
        wall_time=time.perf_counter() - t0,
    )
