"""Batched sweeps: grid points that differ only in numbers run as ONE compiled program.

A sweep's grid points often share everything but numbers: learning rates, betas, seeds, the
entries of a problem's matrices. `train` would trace and compile one program per point and
dispatch it once per step per point. Here M such points ("members") are stacked along a
leading axis and advanced together by ``jit(vmap(step))``: one compile, one dispatch per step.

Which points batch. `trace_program` traces one member's step (batch sampling
``batches(t, fold_in(key, t))``, loss and gradient, the Optax update, the finite / divergence
check and the logged metrics) with `jax.make_jaxpr` into a jaxpr and its constants (the
arrays the loss, the sampler and the optimizer close over). Two members batch when their
jaxprs print identically — same primitives, shapes, dtypes, literals and pytree structures —
and their host-side settings (steps, logging strides, workers, block labels, x64) agree; their
differences are then pure data: constants (stacked along the member axis, or passed once when
every member holds the same value), initial parameters, optimizer state and PRNG keys. A
number baked into the program as a literal (a Python float closed over by the loss, or a
learning rate passed to a plain Optax constructor) makes the jaxprs differ, so such points
run sequentially: correct by construction, never a silent mix-up. This is why
`heterogeneity.experiment.make_optimizer` wraps the registry's optimizer in
``optax.inject_hyperparams``: the learning rate and betas become optimizer state, i.e. data.
Constants closed over by a nested ``jit`` stay inside the jaxpr, so they are compared by
value and members whose nested constants differ are not batched. Iterator batches, callbacks
in the program, or anything that fails to trace fall back to the sequential `train`.

Semantics, member by member, are `train`'s, and the step is `train`'s own
(``_train._make_step``): steps ``t = 0..T-1``; the loss at the parameters before step ``t``;
a device flag ``alive`` cleared by the first bad step (a loss, gradient or new parameters not
finite, or a loss above ``divergence_factor · |L_0|``), after which every step of that member
is a no-op (a select), so one member diverging never touches the others. The host checks the
flags at every logged step and before every evaluation; a member found diverged at step
``d`` gets ``status="diverged"``, ``diverged_step=d``, ``diverged_loss``, the history before
``d`` and no later evaluation; the batch stops early once every member has stopped. History,
final metrics and evaluations are assembled as `train` assembles them, into a `TrainResult`
per member, so a sweep writes the same record for a batched member as for a sequential run.
(Batched runs keep no ``run_dir`` checkpoints: a batch killed midway reruns from step 0.)

Equality with sequential runs. The arithmetic per member is the same, but XLA may compile a
batched contraction (e.g. ``H_m w_m`` for M matrices, or ``H W`` for one shared matrix)
with a different summation order than the single matrix-vector product, so results agree to
a few float32 ulps per step rather than bitwise; elementwise programs (sign methods, Adam on
diagonal problems) usually agree bitwise. The tests state the tolerance.

Devices. With D > 1 devices the member axis is sharded over a 1-D ``jax.sharding.Mesh``
(axis ``"members"``, on min(D, M) devices); M is padded to a multiple of that with copies of
the last member, whose results are dropped. Shared constants are replicated. By default
(`default_devices`) a batch uses every accelerator, but one device on CPU, where simulated
devices (``--xla_force_host_platform_device_count``) share the same cores and sharding only
adds dispatch (a toy sweep ran about 3x slower over 8 simulated devices on 2 cores).
"""
from __future__ import annotations

import collections
import hashlib
import json
import re
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from heterogeneity.experiment._train import TrainResult, _eval_dict, _gini_of_block_norms, _make_step, _strong

__all__ = ["Program", "Unbatchable", "trace_program", "group_programs", "run_batched", "default_devices"]

MEMBER_AXIS = "members"


class Unbatchable(Exception):
    """This run cannot join a batch (the reason is the message); it runs through `train`."""


class Program(NamedTuple):
    """One member, traced: its step/eval jaxprs with constants, initial state and host settings."""

    signature: str
    step_jaxpr: Any  # jax.extend.core.Jaxpr
    step_consts: list
    step_out_tree: Any
    nested_consts: list  # constants inside nested jaxprs (compared by value, never stacked)
    eval_jaxpr: Any
    eval_consts: list
    eval_out_tree: Any
    params: Any
    opt_state: Any
    key: Any
    spec: Any  # the RunSpec
    block_labels: tuple[str, ...] | None
    block_sizes: np.ndarray | None


def _member_step(spec, factor, axis_name="workers"):
    """``(params, opt_state, alive, loss0, t, key) -> (params, opt_state, alive, loss0, metrics)``: `train`'s own
    step (`heterogeneity.experiment._train._make_step`, so the arithmetic and the divergence rule are one
    code), with the batch of step ``t`` drawn inside: ``batches(t, fold_in(key, t))`` or the fixed batch."""
    step = _make_step(spec.loss_fn, spec.optimizer, spec.partition, spec.num_workers, axis_name, factor, None)
    if callable(spec.batches):
        batches = spec.batches
        fetch = lambda t, key: batches(t, jax.random.fold_in(key, t))  # noqa: E731
    else:
        fixed = jax.tree.map(jnp.asarray, spec.batches)
        fetch = lambda t, key: fixed  # noqa: E731

    def member(params, opt_state, alive, loss0, t, key):
        return step(params, opt_state, alive, loss0, fetch(t, key))

    return member


def _subjaxprs(value):
    if isinstance(value, (jcore.ClosedJaxpr, jcore.Jaxpr)):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _subjaxprs(v)


def _nested(jaxpr, consts: list, primitives: set) -> None:
    for eqn in jaxpr.eqns:
        primitives.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in _subjaxprs(value):
                if isinstance(sub, jcore.ClosedJaxpr):
                    consts.extend(sub.consts)
                    _nested(sub.jaxpr, consts, primitives)
                else:
                    _nested(sub, consts, primitives)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _trace(fn, *args):
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    nested: list = []
    primitives: set = set()
    _nested(closed.jaxpr, nested, primitives)
    callbacks = sorted(p for p in primitives if "callback" in p)
    if callbacks:
        raise Unbatchable(f"the program calls back to Python ({', '.join(callbacks)})")
    text = _ADDRESS.sub("", str(closed.jaxpr))
    return closed.jaxpr, list(closed.consts), jax.tree.structure(out_shape), nested, text


def trace_program(spec, *, divergence_factor: float | None = None, x64: bool = False) -> Program:
    """Trace one run (a `RunSpec`) for batching; raise `Unbatchable` when it must run alone.

    Anything that goes wrong here (a bad setting, an optimizer whose ``init`` raises, a loss
    that does not trace) makes the run `Unbatchable`: `train` then runs it and reports the error.
    """
    try:
        return _trace_program(spec, divergence_factor, x64)
    except Unbatchable:
        raise
    except Exception as e:  # noqa: BLE001 - reported by the sequential run instead
        raise Unbatchable(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from None


def _trace_program(spec, divergence_factor, x64) -> Program:
    import collections.abc

    if isinstance(spec.batches, collections.abc.Iterator):
        raise Unbatchable("batches is an iterator (consumed one run at a time)")
    if callable(spec.batches) and spec.key is None:
        raise Unbatchable("a callable batches needs a key")
    if not hasattr(spec.optimizer, "init") or not hasattr(spec.optimizer, "update"):
        raise Unbatchable("optimizer is not an optax.GradientTransformation")
    for name in ("num_steps", "log_every", "eval_every"):
        value = getattr(spec, name)
        if name == "eval_every" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (name != "num_steps"):
            raise Unbatchable(f"{name}={value!r} is invalid (train reports it)")
    params = _strong(spec.params)
    opt_state = spec.optimizer.init(params)
    if spec.num_workers is not None:
        opt_state = jax.tree.map(lambda x: jnp.broadcast_to(x, (spec.num_workers,) + jnp.shape(x)), opt_state)
    opt_state = _strong(opt_state)
    key = spec.key if spec.key is not None else jax.random.key(0)
    key = key if jax.dtypes.issubdtype(jnp.result_type(key), jax.dtypes.prng_key) else jnp.asarray(key)
    alive, loss0, t = jnp.asarray(True), jnp.asarray(jnp.nan, jnp.float32), jnp.asarray(0, jnp.int32)
    step_jaxpr, step_consts, step_tree, nested, step_text = _trace(
        _member_step(spec, divergence_factor), params, opt_state, alive, loss0, t, key)
    eval_jaxpr, eval_consts, eval_tree, eval_text = None, [], None, ""
    if spec.eval_fn is not None:
        eval_fn = spec.eval_fn
        eval_jaxpr, eval_consts, eval_tree, eval_nested, eval_text = _trace(lambda p: _eval_dict(eval_fn(p)), params)
        nested = nested + eval_nested
    labels = tuple(spec.partition.labels(params)) if spec.partition is not None else None
    sizes = np.asarray(spec.partition.layout(params).sizes) if spec.partition is not None else None
    eval_every = spec.log_every if spec.eval_every is None else spec.eval_every
    host = [int(spec.num_steps), int(spec.log_every), int(eval_every), spec.num_workers, labels,
            "callable" if callable(spec.batches) else "fixed", bool(x64), divergence_factor,
            str(jax.tree.structure((params, opt_state, key))), len(nested)]
    digest = hashlib.sha256(json.dumps([step_text, eval_text, repr(host)]).encode()).hexdigest()
    return Program(digest, step_jaxpr, step_consts, step_tree, nested, eval_jaxpr, eval_consts, eval_tree,
                   params, opt_state, key, spec, labels, sizes)


def _host(x) -> np.ndarray:
    x = x if not jax.dtypes.issubdtype(jnp.result_type(x), jax.dtypes.prng_key) else jax.random.key_data(x)
    return np.asarray(x)


def _same(a, b) -> bool:
    """Whether two constants hold the same value (identity first; then shape, dtype and contents)."""
    if a is b:
        return True
    if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
        return False
    return bool(np.array_equal(_host(a), _host(b), equal_nan=jnp.issubdtype(jnp.result_type(a), jnp.inexact)))


def group_programs(programs: Sequence[Program]) -> list[list[int]]:
    """Indices of ``programs`` grouped into batches (same signature and equal nested constants), in order."""
    groups: list[list[int]] = []
    for i, prog in enumerate(programs):
        for g in groups:
            rep = programs[g[0]]
            if rep.signature == prog.signature and all(
                    _same(a, b) for a, b in zip(rep.nested_consts, prog.nested_consts)):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _split_consts(const_lists: list[list]) -> tuple[list[bool], list, list]:
    """Per constant position: shared (one value for all members) or stacked along the member axis."""
    shared_flags, shared, stacked = [], [], []
    for values in zip(*const_lists):
        if all(_same(values[0], v) for v in values[1:]):
            shared_flags.append(True)
            shared.append(values[0])
        else:
            shared_flags.append(False)
            stacked.append(_stack(list(values)))
    return shared_flags, shared, stacked


def _evaluator(jaxpr, out_tree, shared_flags):
    def run(stacked, shared, *args):
        it_stacked, it_shared = iter(stacked), iter(shared)
        consts = [next(it_shared) if flag else next(it_stacked) for flag in shared_flags]
        out = jax.core.eval_jaxpr(jaxpr, consts, *jax.tree.leaves(args))
        return jax.tree.unflatten(out_tree, out)
    return run


_CACHE: collections.OrderedDict = collections.OrderedDict()  # compiled batched programs, by signature and layout


def _compiled(kind: str, prog: Program, shared_flags, size: int, devices, donate: bool):
    key = (kind, prog.signature, tuple(shared_flags), size, tuple(str(d) for d in devices), donate)
    if key not in _CACHE:
        if kind == "step":
            fn = jax.vmap(_evaluator(prog.step_jaxpr, prog.step_out_tree, shared_flags),
                          in_axes=(0, None, 0, 0, 0, 0, None, 0))
            _CACHE[key] = jax.jit(fn, donate_argnums=(2, 3) if donate else ())
        else:
            fn = jax.vmap(_evaluator(prog.eval_jaxpr, prog.eval_out_tree, shared_flags), in_axes=(0, None, 0))
            _CACHE[key] = jax.jit(fn)
        while len(_CACHE) > 16:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def _result(**fields) -> TrainResult:
    return TrainResult(**{name: fields.get(name) for name in TrainResult._fields})


def default_devices() -> list:
    """The devices a batch is sharded over: every device of the default backend, except on CPU, where
    (simulated) devices share the same cores and sharding only adds per-device dispatch: one device."""
    devices = jax.devices()
    return devices[:1] if jax.default_backend() == "cpu" else devices


def run_batched(programs: Sequence[Program], *, devices: Sequence[Any] | None = None,
                donate: bool | None = None) -> list[TrainResult]:
    """Train every member of one batch (programs of one `group_programs` group) together.

    Returns one `TrainResult` per member, as `train` would have returned it (``wall_time`` is
    the batch's time divided by the number of members; ``num_compiles`` counts the batched
    program's compilations). Raises whatever the batched program raises (e.g. out of
    memory): the caller falls back to sequential runs.
    """
    if not programs:
        return []
    t0 = time.perf_counter()
    rep = programs[0]
    if any(p.signature != rep.signature for p in programs):
        raise ValueError("run_batched: programs of different signatures cannot share a batch")
    spec = rep.spec
    num_steps, log_every = int(spec.num_steps), int(spec.log_every)
    eval_every = log_every if spec.eval_every is None else int(spec.eval_every)
    m_real = len(programs)
    devices = list(devices if devices is not None else default_devices())
    n_dev = max(1, min(len(devices), m_real))
    size = -(-m_real // n_dev) * n_dev
    index = list(range(m_real)) + [m_real - 1] * (size - m_real)  # padding: copies of the last member
    members = [programs[i] for i in index]
    if donate is None:
        donate = jax.default_backend() != "cpu"

    step_flags, step_shared, step_stacked = _split_consts([p.step_consts for p in members])
    params = _stack([p.params for p in members])
    opt_state = _stack([p.opt_state for p in members])
    keys = _stack([p.key for p in members])
    alive = jnp.ones((size,), bool)
    loss0 = jnp.full((size,), jnp.nan, jnp.float32)  # the step-0 loss once step 0 ran (train's carry)
    eval_flags = eval_shared = eval_stacked = None
    if rep.eval_jaxpr is not None:
        eval_flags, eval_shared, eval_stacked = _split_consts([p.eval_consts for p in members])
    if n_dev > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.asarray(devices[:n_dev]), (MEMBER_AXIS,))
        split, whole = NamedSharding(mesh, PartitionSpec(MEMBER_AXIS)), NamedSharding(mesh, PartitionSpec())
        put = lambda tree, sharding: jax.device_put(tree, sharding)  # noqa: E731
        params, opt_state, keys, alive, loss0 = put((params, opt_state, keys, alive, loss0), split)
        step_stacked, step_shared = put(step_stacked, split), put(step_shared, whole)
        if eval_flags is not None:
            eval_stacked, eval_shared = put(eval_stacked, split), put(eval_shared, whole)
    step_fn = _compiled("step", rep, step_flags, size, devices[:n_dev], donate)
    eval_fn = _compiled("eval", rep, eval_flags, size, devices[:n_dev], False) if eval_flags is not None else None

    logs = [collections.defaultdict(list) for _ in range(m_real)]
    evals = [collections.defaultdict(list) for _ in range(m_real)]
    running = np.ones(m_real, bool)  # not yet found diverged by a host check
    diverged: list[tuple[int, float] | None] = [None] * m_real  # (first bad step, its loss)
    pending: list[tuple[int, Any]] = []

    def run_eval(step, who):
        values = jax.device_get(eval_fn(eval_stacked, eval_shared, params))
        for m in np.nonzero(who)[0]:
            evals[m]["eval_step"].append(step)
            for name, v in values.items():
                evals[m][f"eval_{name}"].append(np.asarray(v[m]))

    def flush():
        nonlocal pending
        for step, metrics in jax.device_get(pending):
            logged = step % log_every == 0 or step == num_steps - 1
            for m in np.nonzero(running)[0]:
                if not bool(metrics["ok"][m]):
                    running[m] = False
                    diverged[m] = (step, float(metrics["loss"][m]))
                elif logged:
                    logs[m]["step"].append(step)
                    for name, v in metrics.items():
                        if name != "ok":
                            logs[m][name].append(v[m])
        pending = []

    if eval_fn is not None:
        run_eval(0, running)
    for step in range(num_steps):
        params, opt_state, alive, loss0, metrics = step_fn(step_stacked, step_shared, params, opt_state, alive, loss0,
                                                           np.int32(step), keys)  # a NumPy scalar: no eager op
        pending.append((step, metrics))
        at_log = step % log_every == 0 or step == num_steps - 1
        at_eval = eval_fn is not None and (step + 1) % eval_every == 0 and step + 1 < num_steps
        if at_log or at_eval:  # as in train: evaluations never see a state past a bad step
            flush()
            if not running.any():
                break
        if at_eval:
            run_eval(step + 1, running)

    finished = running.copy()
    last = None
    if num_steps > 0 and finished.any() and not callable(spec.batches):  # loss at the final params (fixed batch)
        _, _, _, _, last = jax.device_get(step_fn(step_stacked, step_shared, params, opt_state,
                                                  jnp.ones((size,), bool), loss0, np.int32(num_steps), keys))
    if eval_fn is not None and finished.any():
        run_eval(num_steps, finished)
    host_params = jax.device_get(params) if any(p.spec.summarize is not None for p in programs) else None
    results = []
    wall = (time.perf_counter() - t0) / m_real
    compiles = int(step_fn._cache_size())
    for m in range(m_real):
        status = "finished" if finished[m] else "diverged"
        steps_run = num_steps if finished[m] else diverged[m][0]
        final: dict[str, float] = {"steps": int(steps_run)}
        last_loss = None
        if finished[m] and num_steps > 0:
            if last is not None:
                last_loss = float(last["loss"][m])
                final["final_grad_norm"] = float(last["grad_norm"][m])
                if "block_norms" in last:
                    final["final_gini"] = float(_gini_of_block_norms(last["block_norms"][m][None], rep.block_sizes)[0])
            else:
                last_loss = float(logs[m]["loss"][-1])
        history = {k: np.asarray(v) for k, v in logs[m].items()}
        if rep.block_sizes is not None and "block_norms" in history:
            history["gini"] = _gini_of_block_norms(history["block_norms"], rep.block_sizes)
        history.update({k: np.asarray(v) for k, v in evals[m].items()})
        if "loss" in history and history["loss"].size:
            final["min_loss"] = float(np.min(history["loss"]))
        final["final_loss"] = last_loss if last_loss is not None else float("nan")
        for k, v in evals[m].items():
            if k != "eval_step" and np.ndim(v[-1]) == 0:
                final[k] = float(v[-1])
        if status == "diverged":
            final["diverged_step"] = int(diverged[m][0])
            final["diverged_loss"] = diverged[m][1]
        member_params = jax.tree.map(lambda x: x[m], host_params) if host_params is not None else None
        results.append(_result(params=member_params, opt_state=None, history=history, final=final, status=status,
                               diverged_step=None if finished[m] else diverged[m][0], block_labels=rep.block_labels,
                               num_compiles=compiles, wall_time=wall))
    return results
