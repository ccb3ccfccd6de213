"""The one train loop: a jitted Optax step, divergence recorded (never raised), cheap logging.

Every experiment of the toolkit (the quadratic case studies of seed 001 §3.1 and seed 000
App. D.9, the rotated quadratic of seed 003 §4.1, the sign-method sweeps of seed 002 App. E,
the LN-placement and nanoGPT runs of seed 000 §4.7 / App. D.10) runs through `train`.

One step is one compiled program (``jax.jit``; parameters and optimizer state are donated
on accelerators, where donation is implemented): loss and gradient by
``jax.value_and_grad``, the Optax update, and the per-step diagnostics — ℓ2 and ℓ1 gradient
norms (seed 002 App. E tracks both) and, given a partition, the block gradient norms
``G_b = ‖[g]_b‖₂``. The Gini coefficient of ``G_b/√P_b`` (seed 000 App. C.2, D.5) is
formed on the host from the logged norms (`heterogeneity.metrics.gini`, batched over the
logged steps), which keeps sorting out of the step. Shapes never change, so the step
compiles once.

Divergence. The step carries a device flag ``alive`` (all steps so far finite). A step whose
loss, gradient or new parameters are not finite clears it, and a step with the flag cleared
leaves parameters and optimizer state unchanged (a select inside the step), so the steps
after the first non-finite one and before the next host check are no-ops. The host checks
the flags every ``log_every`` steps (one device sync per check, not one per step); at the
first non-finite step ``d`` the run stops with ``status="diverged"``, ``diverged_step=d``
and the history up to that step, and returns the state after the last finite step ``d-1``:
bit-identical to a clean run of ``num_steps=d``, whatever ``log_every`` is.

Multi-worker optimizers (majority vote, seed 002 Algorithm 2 and its baselines) are
simulated on one device with ``num_workers=W``: the batch's leading axis is split into W
equal shards, each worker computes its gradient and runs the optimizer's update under
``jax.vmap(axis_name=...)`` (the optimizer aggregates with collectives over that axis),
every worker keeps its own optimizer state, and the server update (identical on every
worker after the vote) is taken from worker 0.
"""
from __future__ import annotations

import collections.abc
import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any

__all__ = ["TrainResult", "train"]


class TrainResult(NamedTuple):
    """Outcome of `train`.

    ``history`` maps names to NumPy arrays logged every ``log_every`` steps: ``step``,
    ``loss`` (the loss at the parameters *before* that step's update), ``grad_norm`` (ℓ2),
    ``grad_l1``; with a partition also ``block_norms`` (num_logs, num_blocks) and ``gini``;
    with an ``eval_fn`` also ``eval_step`` and ``eval_<name>`` (every ``eval_every`` steps
    and at the end). ``status`` is ``"finished"``, ``"diverged"`` (non-finite loss or
    gradient at step ``diverged_step``) or ``"stopped"`` (the callback asked to stop).
    ``final`` holds scalar summaries: ``steps`` run, ``min_loss`` (over logged steps),
    ``final_loss`` (for a fixed batch the loss *at the final params*, with
    ``final_grad_norm`` / ``final_gini``, from one extra evaluation of the compiled step;
    otherwise the last logged mini-batch loss), the last value of every eval metric.
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


def _batch_source(batches, key):
    """Normalise ``batches`` to ``fetch(step) -> batch``.

    A callable is called as ``batches(step, key_step)`` with ``key_step = fold_in(key, step)``;
    an iterator (anything with ``__next__``) is advanced once per step; anything else (an
    array, a dict or tuple of arrays, ``None``) is one fixed batch used at every step
    (full-batch gradient descent). Pass ``iter(list_of_batches)`` to cycle through a list.
    """
    if callable(batches) and not isinstance(batches, collections.abc.Iterator):
        if key is None:
            raise ValueError("train: batches is a callable (step, key) -> batch, so a PRNG `key` is required")
        return lambda step: batches(step, jax.random.fold_in(key, step)), False
    if isinstance(batches, collections.abc.Iterator):
        def fetch(step):
            try:
                return next(batches)
            except StopIteration:
                raise ValueError(f"train: the batch iterator ran out at step {step}; it must yield num_steps batches") from None
        return fetch, False
    fixed = jax.tree.map(jnp.asarray, batches)
    return (lambda step: fixed), True


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
    """Gini of ``G_b/√P_b`` per row of ``norms`` (T, B) (seed 000 App. D.5), via `heterogeneity.metrics.gini`."""
    from heterogeneity.metrics import gini

    return np.asarray(gini(np.asarray(norms, np.float64) / np.sqrt(np.asarray(sizes, np.float64))))


def _make_step(loss_fn, optimizer, partition, num_workers, axis_name):
    """The jitted step ``(params, opt_state, alive, batch) -> (params, opt_state, alive, metrics)``.

    ``alive`` is true while every step so far was finite; once cleared the step changes nothing."""
    vg = jax.value_and_grad(loss_fn)

    def step(params, opt_state, alive, batch):
        if num_workers is None:
            loss, grads = vg(params, batch)
            updates, new_state = optimizer.update(grads, opt_state, params)
        else:
            shards = _split_workers(batch, num_workers)
            losses, worker_grads = jax.vmap(vg, in_axes=(None, 0))(params, shards)
            worker_updates, new_state = jax.vmap(
                optimizer.update, in_axes=(0, 0, None), axis_name=axis_name)(worker_grads, opt_state, params)
            loss = jnp.mean(losses)
            grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), worker_grads)
            updates = jax.tree.map(lambda u: u[0], worker_updates)
        new_params = optax.apply_updates(params, updates)
        ok = alive & jnp.isfinite(loss) & _all_finite(grads) & _all_finite(new_params)
        # keep the last finite iterate; cast back so that the carried types never change (no recompiles)
        keep = lambda new, old: jax.tree.map(functools.partial(_select, ok), new, old)  # noqa: E731
        metrics = {
            "loss": loss,
            "ok": ok,
            "grad_norm": optax.tree.norm(grads),
            "grad_l1": sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads)),
        }
        if partition is not None:  # the Gini is formed on the host from the logged norms (cheaper step)
            metrics["block_norms"] = jnp.sqrt(partition.block_sq_norms(grads))
        return keep(new_params, params), keep(new_state, opt_state), ok, metrics

    return step


def _eval_dict(value) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {"loss": value}


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
      num_workers: simulate W workers for majority-vote optimizers (see module docstring);
        the batch's leading axis must be divisible by W.
      axis_name: the vmap axis name the multi-worker optimizer reduces over.
      donate: donate params/state buffers to the step (default: on non-CPU backends).
    """
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
        raise ValueError(f"train: num_steps must be an int >= 0, got {num_steps!r}")
    if not isinstance(log_every, (int, np.integer)) or log_every < 1:
        raise ValueError(f"train: log_every must be an int >= 1, got {log_every!r}")
    eval_every = log_every if eval_every is None else eval_every
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise ValueError(f"train: eval_every must be an int >= 1, got {eval_every!r}")
    if num_workers is not None and (not isinstance(num_workers, (int, np.integer)) or num_workers < 1):
        raise ValueError(f"train: num_workers must be None or an int >= 1, got {num_workers!r}")
    if not hasattr(optimizer, "init") or not hasattr(optimizer, "update"):
        raise ValueError(f"train: optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
    fetch, fixed = _batch_source(batches, key)
    t0 = time.perf_counter()

    if donate is None:
        donate = jax.default_backend() != "cpu"
    copy = (lambda tree: jax.tree.map(jnp.copy, tree)) if donate else (lambda tree: tree)  # noqa: E731
    params = _strong(copy(params))  # the caller's params must survive donation
    opt_state = optimizer.init(params)
    if num_workers is not None:
        opt_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_workers,) + jnp.shape(x)), opt_state)
    opt_state = _strong(opt_state)
    step_fn = jax.jit(_make_step(loss_fn, optimizer, partition, num_workers, axis_name),
                      donate_argnums=(0, 1) if donate else ())
    eval_jit = jax.jit(eval_fn) if eval_fn is not None else None
    block_labels = tuple(partition.labels(params)) if partition is not None else None
    block_sizes = np.asarray(partition.layout(params).sizes) if partition is not None else None

    logs: dict[str, list] = collections.defaultdict(list)
    evals: dict[str, list] = collections.defaultdict(list)
    pending: list[tuple[int, dict]] = []  # device metrics awaiting the next host check
    status, diverged_step, last_loss = "finished", None, None

    def run_eval(step):
        evals["eval_step"].append(step)
        for name, v in _eval_dict(eval_jit(params)).items():
            evals[f"eval_{name}"].append(np.asarray(v))

    def flush() -> int | None:
        """Move pending metrics to the host; return the first non-finite step, if any."""
        nonlocal pending
        bad = None
        for step, m in jax.device_get(pending):
            if not bool(m["ok"]):
                bad = step
                break
            if step % log_every == 0 or step == num_steps - 1:
                logs["step"].append(step)
                for name, v in m.items():
                    if name != "ok":
                        logs[name].append(v)
        pending = []
        return bad

    if eval_jit is not None:
        run_eval(0)
    step = 0
    alive = jnp.asarray(True)  # on device: no host sync between checks
    for step in range(num_steps):
        params, opt_state, alive, metrics = step_fn(params, opt_state, alive, fetch(step))
        pending.append((step, metrics))
        at_log = step % log_every == 0 or step == num_steps - 1
        if at_log:
            bad = flush()
            if bad is not None:
                status, diverged_step = "diverged", bad
                break
            if callback is not None and callback(step, params, {k: v[-1] for k, v in logs.items()}) is True:
                status = "stopped"
                break
        if eval_jit is not None and (step + 1) % eval_every == 0 and step + 1 < num_steps:
            run_eval(step + 1)
    else:
        step = num_steps
    steps_run = diverged_step if status == "diverged" else (step + 1 if status == "stopped" else num_steps)

    final: dict[str, float] = {"steps": int(steps_run)}
    if status != "diverged" and num_steps > 0:
        if fixed:  # loss and gradient at the final params: one more (compiled) step, update discarded
            _, _, _, m = jax.device_get(step_fn(copy(params), copy(opt_state), jnp.asarray(True), fetch(steps_run)))
            last_loss = float(m["loss"])
            final["final_grad_norm"] = float(m["grad_norm"])
            if "block_norms" in m:
                final["final_gini"] = float(_gini_of_block_norms(m["block_norms"][None], block_sizes)[0])
        else:
            last_loss = float(logs["loss"][-1])
    if eval_jit is not None and status != "diverged":
        run_eval(steps_run)
    history = {k: np.asarray(v) for k, v in logs.items()}
    if partition is not None and "block_norms" in history:
        history["gini"] = _gini_of_block_norms(history["block_norms"], block_sizes)
    history.update({k: np.asarray(v) for k, v in evals.items()})
    if "loss" in history and history["loss"].size:
        final["min_loss"] = float(np.min(history["loss"]))
    final["final_loss"] = last_loss if last_loss is not None else float("nan")
    for k, v in evals.items():
        if k != "eval_step" and np.ndim(v[-1]) == 0:
            final[k] = float(v[-1])
    if status == "diverged":
        final["diverged_step"] = int(diverged_step)
    return TrainResult(
        params=params, opt_state=opt_state, history=history, final=final, status=status,
        diverged_step=diverged_step, block_labels=block_labels, num_compiles=int(step_fn._cache_size()),
        wall_time=time.perf_counter() - t0,
    )
