"""Pytree partitions: which block each parameter belongs to.

A `Partition` maps every leaf of a parameter pytree to a block label, or cuts one leaf
into several blocks (`Split`, e.g. one block per attention head as Adam-mini does), or
makes every scalar its own block (`Elementwise`). The same object drives blockwise Adam
[Xie24, Algorithm 3], blockwise SLQ spectra [Zhang24, App. C.2], block gradient norms
and Gini coefficients [Tomihari25, App. C.2, D.5], and converts to the labels
`optax.partition` takes.

A partition is a rule; `Partition.layout(params)` resolves it against the static paths and
shapes of a pytree into a hashable `Layout` (cached). Every method works on any pytree with
those paths and shapes and is jit-safe: block membership is static, so reductions are plain
sums with constant indices.

    >>> from heterogeneity import partition as hp
    >>> p = hp.by_role(per_layer=True)
    >>> p.sizes(params)          # {'embedding': 4096, 'layers/0/query': 1024, ...}
    >>> p.block_sq_norms(grads)  # (num_blocks,) array of ‖g_b‖²
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from heterogeneity.tree import leaves_with_paths

PyTree = Any

__all__ = [
    "Split",
    "Elementwise",
    "Layout",
    "Partition",
    "by_leaf",
    "by_regex",
    "by_layer",
    "by_role",
    "from_fn",
    "single_block",
    "by_coordinate",
    "from_name",
    "PARTITION_NAMES",
    "is_weight",
    "weight_blocks",
    "block_selection",
    "BLOCK_SELECTIONS",
    "ROLES",
    "LAYER_PATTERN",
]


class Split(NamedTuple):
    """Cut one leaf into ``parts`` equal chunks along ``axis``, labelled ``f"{label}/{i}"``."""

    label: str
    axis: int = -1
    parts: int = 1


class Elementwise(NamedTuple):
    """Every scalar of the leaf is its own block, labelled ``f"{label}[{i}]"`` (ravel order)."""

    label: str


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """One leaf of a resolved partition, seen as ``rows``: a ``(len(ids), numel // len(ids))`` matrix.

    Row ``i`` holds the elements of block ``ids[i]``: one row for a whole leaf, ``parts`` rows
    for a `Split` (the leaf with ``axis`` moved first), one row per element for `Elementwise`.
    Every piece of block math is a reduction over, or a write into, these rows.
    """

    path: str
    shape: tuple[int, ...]
    axis: int  # the axis the rows run along (0 unless the leaf is a Split)
    ids: tuple[int, ...] | range  # block index of each row

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def whole(self) -> bool:
        return len(self.ids) == 1 and not isinstance(self.ids, range)

    def rows(self, x):
        """``x`` (this leaf's array, NumPy or JAX) as its ``(len(ids), -1)`` row matrix."""
        xp = np if isinstance(x, np.ndarray) else jnp
        return xp.moveaxis(x, self.axis, 0).reshape(len(self.ids), -1) if x.ndim else x.reshape(1, 1)

    def unrows(self, rows):
        """Inverse of `rows`: the ``(len(ids), k)`` matrix back in this leaf's shape."""
        xp = np if isinstance(rows, np.ndarray) else jnp
        if not self.shape:
            return rows.reshape(())
        moved = (self.shape[self.axis],) + tuple(n for i, n in enumerate(self.shape) if i != self.axis)
        return xp.moveaxis(rows.reshape(moved), 0, self.axis)

    def take(self, values):
        """``values[ids]`` (one entry per row), a slice when the ids are contiguous."""
        ids = self.ids
        if isinstance(ids, range) or ids == tuple(range(ids[0], ids[0] + len(ids))):
            return values[ids[0]:ids[0] + len(ids)]
        return values[np.asarray(ids)]


@dataclasses.dataclass(frozen=True)
class Layout:
    """A partition resolved against one pytree structure: static and hashable, and the block math on it.

    Every method takes the pytree's leaves in `jax.tree.leaves` order (jit-safe; the layout
    itself is static).
    """

    treedef: Any
    leaves: tuple[_Leaf, ...]
    label_runs: tuple[tuple[str, int], ...]  # (label, count): count>1 for Elementwise runs
    sizes: tuple[int, ...]

    @functools.cached_property
    def labels(self) -> tuple[str, ...]:
        out: list[str] = []
        for label, count in self.label_runs:
            out.extend([label] if count == 1 and not label.endswith("[]") else
                       [f"{label[:-2]}[{i}]" for i in range(count)])
        return tuple(out)

    @property
    def num_blocks(self) -> int:
        return len(self.sizes)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(leaf.path for leaf in self.leaves)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def block_index(self, label: str) -> int:
        try:
            return self.index[label]
        except KeyError:
            shown = ", ".join(self.labels[:20]) + (" ..." if self.num_blocks > 20 else "")
            raise ValueError(f"unknown block label {label!r}; blocks are: {shown}") from None

    def block_sum(self, values) -> jax.Array:
        """``(num_blocks,)``: the sum of each block's elements."""
        dtype = jnp.result_type(*values, jnp.float32)
        sums = [jnp.sum(leaf.rows(jnp.asarray(x, dtype)), axis=1) for leaf, x in zip(self.leaves, values)]
        index = np.concatenate([np.asarray(leaf.ids, dtype=np.int64) for leaf in self.leaves])
        return jnp.zeros(self.num_blocks, dtype).at[index].add(jnp.concatenate(sums))

    def broadcast(self, block_values, like, dtype=None) -> list:
        """Leaves shaped like ``like`` whose every element is ``block_values[its block]``."""
        out = []
        for leaf, x in zip(self.leaves, like):
            per_row = leaf.take(block_values).astype(dtype or jnp.result_type(x))
            out.append(leaf.unrows(jnp.broadcast_to(per_row[:, None], (len(leaf.ids), leaf.numel // len(leaf.ids)))))
        return out

    def flat_block_ids(self) -> np.ndarray:
        """The block index of every element, leaves raveled and concatenated (static NumPy)."""
        return np.concatenate([
            leaf.unrows(np.broadcast_to(np.asarray(leaf.ids, np.int64)[:, None],
                                        (len(leaf.ids), leaf.numel // len(leaf.ids)))).reshape(-1)
            for leaf in self.leaves])

    def pieces(self, b: int):
        """``(leaf number, row)`` of every row of block ``b``, in leaf order."""
        for n, leaf in enumerate(self.leaves):
            if b in leaf.ids:  # a leaf holds a block in at most one row
                yield n, leaf.ids.index(b)

    def gather(self, values, b: int) -> jax.Array:
        """Block ``b``'s elements as one 1-D array (leaf order, then row order)."""
        return jnp.concatenate([self.leaves[n].rows(values[n])[i] for n, i in self.pieces(b)])

    def scatter(self, values, b: int, flat) -> list:
        """``values`` with block ``b``'s elements replaced by ``flat`` (inverse of `gather`)."""
        values, offset = list(values), 0
        for n, i in self.pieces(b):
            leaf, x = self.leaves[n], values[n]
            rows = leaf.rows(x)
            k = rows.shape[1]
            values[n] = leaf.unrows(rows.at[i].set(flat[offset:offset + k].astype(x.dtype)))
            offset += k
        return values


def _normalise_axis(axis: int, ndim: int, path: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"Split axis {axis} is out of range for leaf {path!r} with {ndim} dims")
    return axis % ndim


class Partition:
    """A rule ``path -> label | Split | Elementwise | None`` over the leaves of a pytree.

    ``None`` means "no rule matched": resolving such a partition raises `ValueError`
    naming every uncovered path. ``expected`` (paths -> shapes), when given, pins the
    partition to one parameter structure (as `by_leaf` does).
    """

    def __init__(
        self,
        rule: Callable[[str], str | Split | Elementwise | None],
        *,
        name: str = "custom",
        expected: dict[str, tuple[int, ...]] | None = None,
        check: Callable[[list[str]], None] | None = None,
    ):
        if not callable(rule):
            raise ValueError(f"Partition rule must be callable path -> label, got {type(rule).__name__}")
        self.rule = rule
        self.name = name
        self.expected = expected
        self.check = check
        self._cache: dict[Any, Layout] = {}

    def __repr__(self) -> str:
        return f"Partition({self.name})"

    # ------------------------------------------------------------------ resolution
    def layout(self, params: PyTree) -> Layout:
        """Resolve against the paths and shapes of ``params`` (cached; jit-safe)."""
        named = leaves_with_paths(params)
        treedef = jax.tree.structure(params)
        shapes = tuple(tuple(int(s) for s in jnp.shape(x)) for _, x in named)
        cache_key = (treedef, shapes)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._resolve(treedef, [p for p, _ in named], shapes)
        return self._cache[cache_key]

    def _resolve(self, treedef, paths: list[str], shapes: tuple[tuple[int, ...], ...]) -> Layout:
        if not paths:
            raise ValueError("cannot partition an empty pytree (no leaves)")
        if self.expected is not None:
            self._check_expected(paths, shapes)
        if self.check is not None:
            self.check(paths)
        uncovered = []
        block_of: dict[str, int] = {}
        runs: list[tuple[str, int]] = []
        sizes: list[int] = []
        members: dict[int, list[str]] = {}
        leaves = []

        def block(label: str, n: int, path: str) -> int:
            if label not in block_of:
                block_of[label] = len(sizes)
                runs.append((label, 1))
                sizes.append(0)
            b = block_of[label]
            sizes[b] += n
            members.setdefault(b, []).append(path)
            return b

        for path, shape in zip(paths, shapes):
            numel = int(np.prod(shape, dtype=np.int64))
            target = self.rule(path)
            if target is None:
                uncovered.append(path)
                continue
            if isinstance(target, Split):
                if not isinstance(target.parts, int) or target.parts < 1:
                    raise ValueError(f"Split parts must be a positive int, got {target.parts!r} for leaf {path!r}")
                axis = _normalise_axis(target.axis, len(shape), path)
                if shape[axis] % target.parts:
                    raise ValueError(
                        f"cannot split leaf {path!r} of shape {shape} into {target.parts} equal parts along axis {axis}")
                ids = tuple(block(f"{target.label}/{i}", numel // target.parts, path) for i in range(target.parts))
                leaves.append(_Leaf(path, shape, axis, ids))
            elif isinstance(target, Elementwise):
                key = f"{target.label}[]"
                if key in block_of:
                    raise ValueError(f"Elementwise label {target.label!r} is used by more than one leaf (at {path!r})")
                start = len(sizes)
                block_of[key] = start
                runs.append((key, numel))
                sizes.extend([1] * numel)
                if numel == 0:
                    members.setdefault(-1, []).append(path)
                leaves.append(_Leaf(path, shape, 0, range(start, start + numel)))
            elif isinstance(target, str):
                leaves.append(_Leaf(path, shape, 0, (block(target, numel, path),)))
            else:
                raise ValueError(
                    f"partition rule returned {target!r} for leaf {path!r}; expected a str label, Split, Elementwise or None")
        if uncovered:
            raise ValueError(f"partition {self.name} covers no block for these leaves: {uncovered}")
        empty = {runs[b][0] if b >= 0 else "<elementwise>": members[b] for b in members
                 if b < 0 or sizes[b] == 0}
        if empty:
            raise ValueError(f"partition {self.name} has empty blocks (zero parameters): "
                             + "; ".join(f"{label!r} from leaves {ps}" for label, ps in empty.items()))
        return Layout(treedef, tuple(leaves), tuple(runs), tuple(sizes))

    def _check_expected(self, paths, shapes):
        expected = self.expected
        got = dict(zip(paths, shapes))
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        reshaped = sorted(p for p in set(got) & set(expected) if tuple(got[p]) != tuple(expected[p]))
        if missing or extra or reshaped:
            msg = [f"partition {self.name} was built for other params:"]
            if missing:
                msg.append(f"missing leaves {missing}")
            if extra:
                msg.append(f"unexpected leaves {extra}")
            if reshaped:
                msg.append("shape changed for " + ", ".join(f"{p} {expected[p]}->{got[p]}" for p in reshaped))
            raise ValueError(" ".join(msg))

    # ------------------------------------------------------------------ description
    def labels(self, params: PyTree) -> tuple[str, ...]:
        """Block labels in order of first appearance in leaf order."""
        return self.layout(params).labels

    def sizes(self, params: PyTree) -> dict[str, int]:
        """``{label: number of scalars}``."""
        lay = self.layout(params)
        return dict(zip(lay.labels, lay.sizes))

    def num_blocks(self, params: PyTree) -> int:
        return self.layout(params).num_blocks

    def block_paths(self, params: PyTree) -> dict[str, list[str]]:
        """``{label: [paths of the leaves contributing to it]}``."""
        lay = self.layout(params)
        out: dict[str, list[str]] = {}
        for leaf in lay.leaves:
            for b in dict.fromkeys(leaf.ids):
                out.setdefault(lay.labels[b], []).append(leaf.path)
        return out

    def describe(self, params: PyTree) -> str:
        """A small text table of blocks and their sizes."""
        sizes = self.sizes(params)
        width = max(len(label) for label in sizes)
        total = sum(sizes.values())
        rows = [f"{label:<{width}}  {n:>10,d}  {100 * n / total:6.2f}%" for label, n in sizes.items()]
        return "\n".join(rows + [f"{'total':<{width}}  {total:>10,d}"])

    def optax_labels(self, params: PyTree) -> PyTree:
        """The label pytree `optax.partition` (and `optax.multi_transform`) takes."""
        lay = self.layout(params)
        bad = [leaf.path for leaf in lay.leaves if not leaf.whole]
        if bad:
            raise ValueError(f"optax.partition labels whole leaves only; these leaves are split into blocks: {bad}")
        return jax.tree.unflatten(lay.treedef, [lay.labels[leaf.ids[0]] for leaf in lay.leaves])

    # ------------------------------------------------------------------ block math (jit-safe, on the layout)
    def block_sum(self, tree: PyTree) -> jax.Array:
        """``(num_blocks,)``: the sum of the elements of each block."""
        return self.layout(tree).block_sum(jax.tree.leaves(tree))

    def block_sq_norms(self, tree: PyTree) -> jax.Array:
        """``(num_blocks,)``: ‖t_b‖² for every block b."""
        return self.block_sum(jax.tree.map(lambda x: jnp.square(jnp.abs(x).astype(jnp.result_type(x, jnp.float32))), tree))

    def broadcast(self, values: jax.Array, like: PyTree, *, dtype=None) -> PyTree:
        """A pytree shaped like ``like`` whose every element is ``values[its block]``.

        Elements take ``like``'s dtypes unless ``dtype`` is given.
        """
        lay = self.layout(like)
        values = jnp.asarray(values)
        if values.shape != (lay.num_blocks,):
            raise ValueError(f"broadcast expects values of shape ({lay.num_blocks},), got {values.shape}")
        return jax.tree.unflatten(lay.treedef, lay.broadcast(values, jax.tree.leaves(like), dtype))

    def block_ids(self, like: PyTree) -> PyTree:
        """A pytree of int32 arrays holding the block index of every element."""
        return self.broadcast(jnp.arange(self.num_blocks(like), dtype=jnp.int32), like, dtype=jnp.int32)

    def flat_block_ids(self, params: PyTree) -> np.ndarray:
        """Block index of every coordinate of ``ravel_pytree(params)`` (static NumPy, no tracing).

        This is the row/column order of a dense Hessian from `jax.hessian` on the raveled
        parameters, so ``H[np.ix_(ids == b, ids == b)]`` is the diagonal block H_bb.
        """
        return self.layout(params).flat_block_ids()

    def mask(self, like: PyTree, label: str) -> PyTree:
        """1 on block ``label``, 0 elsewhere, in ``like``'s dtypes."""
        lay = self.layout(like)
        onehot = jnp.zeros(lay.num_blocks).at[lay.block_index(label)].set(1.0)
        return self.broadcast(onehot, like)

    def gather(self, tree: PyTree, label: str) -> jax.Array:
        """The elements of block ``label`` as one 1-D array (leaf order, then part order)."""
        lay = self.layout(tree)
        return lay.gather(jax.tree.leaves(tree), lay.block_index(label))

    def scatter(self, tree: PyTree, label: str, flat: jax.Array) -> PyTree:
        """``tree`` with the elements of block ``label`` replaced by ``flat`` (inverse of `gather`)."""
        lay = self.layout(tree)
        b = lay.block_index(label)
        flat = jnp.asarray(flat)
        if flat.shape != (lay.sizes[b],):
            raise ValueError(f"scatter into block {label!r} expects shape ({lay.sizes[b]},), got {flat.shape}")
        return jax.tree.unflatten(lay.treedef, lay.scatter(jax.tree.leaves(tree), b, flat))


# ---------------------------------------------------------------------- constructors
def from_fn(fn: Callable[[str], str | Split | Elementwise | None], *, name: str | None = None) -> Partition:
    """Any callable ``path -> label`` (or `Split` / `Elementwise` / None for "not covered")."""
    return Partition(fn, name=name or getattr(fn, "__name__", "custom"))


def _leaf_path(path: str) -> str:
    return path


def by_leaf(params: PyTree | None = None) -> Partition:
    """One block per leaf (parameter tensor), labelled by its path: the blocks of [Tomihari25,
    App. C.2] and [Zhang24, App. C.2].

    Without ``params`` it is a rule, resolved lazily against whatever pytree it is used on
    (``hp.by_leaf()`` works for any model). With ``params`` it is also pinned to their paths and
    shapes: using it on other params raises `ValueError` naming the difference.

        >>> by_leaf().labels({"w": np.zeros((2, 3)), "b": np.zeros(3)})
        ('b', 'w')
    """
    if params is None:
        return Partition(_leaf_path, name="by_leaf")
    expected = {p: tuple(int(s) for s in jnp.shape(x)) for p, x in leaves_with_paths(params)}
    return Partition(_leaf_path, name="by_leaf", expected=expected)


def single_block(label: str = "all") -> Partition:
    """All parameters in one block (the AdaSGD extreme of blockwise Adam, [Xie24, Algorithm 2])."""
    return Partition(lambda path: label, name=f"single_block({label!r})")


def by_coordinate() -> Partition:
    """Every scalar its own block (the Adam extreme of blockwise Adam, [Xie24, Algorithm 3])."""
    return Partition(Elementwise, name="by_coordinate")


def by_regex(
    rules: Sequence[tuple[str, str | Split | Elementwise]],
    default: str | None = None,
    *,
    strict: bool = False,
) -> Partition:
    """Ordered ``(pattern, label)`` rules; the first pattern that `re.search`-es a path wins.

    A label may use the pattern's groups (``r"layers/(\\d+)"`` -> ``"layer\\1"``). Leaves no
    rule matches go to ``default``; with ``default=None`` they raise `ValueError`. With
    ``strict=True`` a rule that matches no leaf at all is an error too (catches typos).
    """
    compiled = []
    for item in rules:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"by_regex rules must be (pattern, label) pairs, got {item!r}")
        pattern, label = item
        try:
            compiled.append((re.compile(pattern), label))
        except re.error as e:
            raise ValueError(f"by_regex: invalid pattern {pattern!r}: {e}") from None

    def first_match(path: str) -> int | None:
        return next((k for k, (pat, _) in enumerate(compiled) if pat.search(path)), None)

    def rule(path: str):
        k = first_match(path)
        if k is None:
            return default
        pat, label = compiled[k]
        return pat.search(path).expand(label) if isinstance(label, str) else label

    def check_all_rules_used(paths: list[str]) -> None:
        used = {first_match(p) for p in paths}
        unused = [pat.pattern for k, (pat, _) in enumerate(compiled) if k not in used]
        if unused:
            raise ValueError(f"by_regex(strict=True): rules match no leaf: {unused}")

    return Partition(rule, name="by_regex", check=check_all_rules_used if strict else None)


LAYER_PATTERN = r"(?:^|/)((?:layers?|blocks?|h)[/_.]?\d+)(?=/|$)"
"""Path prefix that names one repeated layer: ``layers/3``, ``layers_3``, ``blocks.0``, ``h/2``."""


def by_layer(depth: int | None = None, *, pattern: str = LAYER_PATTERN) -> Partition:
    """Group leaves by layer.

    With ``depth``, the label is the first ``depth`` path components. Otherwise leaves inside
    a repeated layer (``pattern``'s first group, e.g. ``layers/3``) share that label and the
    others (embeddings, final norm, head) are grouped by their top-level module name.
    """
    if depth is not None:
        if depth < 1:
            raise ValueError(f"by_layer: depth must be >= 1, got {depth}")
        return Partition(lambda path: "/".join(path.split("/")[:depth]), name=f"by_layer(depth={depth})")
    layer = re.compile(pattern)

    def rule(path: str) -> str:
        m = layer.search(path)
        return m.group(1) if m else path.split("/")[0]

    return Partition(rule, name="by_layer")


ROLES: tuple[tuple[str, str], ...] = (
    ("norm", r"(?:^|/)(?:final_norm|norm\w*|ln\w*|layer_?norm\w*|bn\w*|batch_?norm\w*)(?:/|$)"),
    ("embedding", r"(?:^|/)(?:embed\w*|wte|wpe|tok_emb\w*|pos_emb\w*|patch_embed\w*)(?:/|$)"),
    ("query", r"(?:^|/)(?:query|q_proj|q)(?:/|$)"),
    ("key", r"(?:^|/)(?:key|k_proj|k)(?:/|$)"),
    ("value", r"(?:^|/)(?:value|v_proj|v)(?:/|$)"),
    ("attn_out", r"attn\w*/(?:out|o_proj|out_proj|proj|c_proj)(?:/|$)"),
    ("mlp_in", r"(?:mlp|ffn|feed_forward|\w*mixing)/(?:fc_in|fc1|up\w*|wi|c_fc)(?:/|$)"),
    ("mlp_out", r"(?:mlp|ffn|feed_forward|\w*mixing)/(?:fc_out|fc2|down\w*|wo|c_proj)(?:/|$)"),
    ("head", r"(?:^|/)(?:head|lm_head|classifier)(?:/|$)"),
)
"""Ordered (role, pattern) rules of `by_role`: the parameter types [Zhang24] treats as blocks."""


def by_role(
    *,
    per_layer: bool = True,
    bias: str = "separate",
    default: str | None = None,
    layer_pattern: str = LAYER_PATTERN,
) -> Partition:
    """Blocks by parameter role: embedding, query, key, value, attn_out, mlp_in, mlp_out, norm, head, bias.

    These are the block types of [Zhang24, Fig. 4, App. D.2]. With ``per_layer`` the label is
    prefixed by the layer (``layers/3/query``), so every layer's Q is its own block; without
    it all queries form one block. ``bias="separate"`` gives biases (outside norms) their own
    role; ``bias="with_weight"`` keeps them in their module's role. An MLP-mixer's two MLPs keep
    separate blocks (``token_mixing/mlp_in`` vs ``channel_mixing/mlp_in``). Leaves matching no role go
    to ``default``, or raise `ValueError` naming them when ``default`` is None.
    """
    if bias not in ("separate", "with_weight"):
        raise ValueError(f"by_role: bias must be 'separate' or 'with_weight', got {bias!r}")
    roles = [(role, re.compile(p)) for role, p in ROLES]
    layer = re.compile(layer_pattern)
    mixing = re.compile(r"(?:^|/)(\w+_mixing)/")  # MLP-mixer: token- and channel-mixing MLPs stay apart

    def rule(path: str):
        role = next((r for r, pat in roles if pat.search(path)), None)
        if bias == "separate" and path.split("/")[-1] == "bias" and role != "norm":
            role = "bias"
        if role is None:
            if default is None:
                return None
            role = default
        mix = mixing.search(path)
        if mix and role in ("mlp_in", "mlp_out", "bias"):
            role = f"{mix.group(1)}/{role}"
        m = layer.search(path) if per_layer else None
        return f"{m.group(1)}/{role}" if m else role

    return Partition(rule, name=f"by_role(per_layer={per_layer})")


# ---------------------------------------------------------------------- names and selections
PARTITION_NAMES: dict[str, str] = {
    "leaf": "one block per parameter tensor, labelled by its path: the blocks of [Tomihari25, App. C.2] and "
            "[Zhang24, App. C.2] (`by_leaf()`)",
    "role": "one block per role and layer (layers/0/query, layers/0/mlp_in, ..., embedding, head, bias); leaves "
            "that match no role go to 'other' (`by_role(per_layer=True, default='other')`)",
    "layer": "one block per repeated layer (layers/3, blocks.0, h/2); other leaves grouped by their top-level "
             "module: embed, final_norm, head (`by_layer()`)",
    "single": "all parameters in one block: AdaSGD, the one-block extreme of blockwise Adam [Xie24, Algorithm 2] "
              "(`single_block('all')`)",
    "coordinate": "every scalar its own block: Adam, the other extreme [Xie24, Algorithm 3] (`by_coordinate()`)",
}
"""The partition names `from_name` knows, each with what it builds (the CLI's ``--partition`` and a
sweep config's ``opt.partition`` take these strings)."""


def from_name(name: str) -> Partition:
    """The partition a name stands for: the one string-to-partition map of the CLI and the configs.

    Names (`PARTITION_NAMES`): ``"leaf"`` = `by_leaf()`, ``"role"`` =
    ``by_role(per_layer=True, default="other")``, ``"layer"`` = `by_layer()`, ``"single"`` =
    ``single_block("all")``, ``"coordinate"`` = `by_coordinate()`. Every one is a rule that needs
    no params: it resolves against the pytree it is used on.

        >>> from_name("layer").labels({"layers": [{"w": np.zeros(2)}, {"w": np.zeros(2)}], "head": np.zeros(3)})
        ('head', 'layers/0', 'layers/1')

    Raises:
        ValueError: an unknown name (the message lists the valid ones and a close match).
    """
    if not isinstance(name, str) or name not in PARTITION_NAMES:
        import difflib

        close = difflib.get_close_matches(name, list(PARTITION_NAMES), n=2) if isinstance(name, str) else []
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown partition name {name!r}.{hint} Valid: {', '.join(PARTITION_NAMES)}")
    if name == "leaf":
        return by_leaf()
    if name == "role":
        return by_role(per_layer=True, default="other")
    if name == "layer":
        return by_layer()
    if name == "single":
        return single_block("all")
    return by_coordinate()


_NORM_MODULE = re.compile(dict(ROLES)["norm"])


def is_weight(path: str) -> bool:
    """Whether the leaf at ``path`` is a weight: a kernel or an embedding, not a bias or a norm parameter.

    A leaf is *not* a weight when its last path component is ``bias`` or when it lies in a
    normalization module (the ``"norm"`` pattern of `ROLES`: ``final_norm``, ``norm_attn``,
    ``ln_1``, ``bn1``, ``layer_norm``, ...). This is the block set of [Zhang24, App. D.1],
    which leaves BatchNorm and LayerNorm out of its blockwise spectra (its ResNet convolutions
    have no bias).

        >>> [is_weight(p) for p in ("layers/0/attn/query/kernel", "head/bias", "final_norm/scale", "embed/embedding")]
        [True, False, False, True]
    """
    return path.split("/")[-1] != "bias" and not _NORM_MODULE.search(path)


BLOCK_SELECTIONS: dict[str, str] = {
    "all": "every block of the partition",
    "weights": "blocks made only of kernels and embeddings (no bias or norm leaf), as [Zhang24, App. D.1]",
}
"""The block selections `block_selection` (and ``heterogeneity report --blocks``) know."""


def weight_blocks(partition: Partition, params: PyTree) -> tuple[str, ...]:
    """Labels of the blocks of ``partition`` whose every leaf is a weight (`is_weight`), in partition order.

    A block that mixes weights with bias or norm leaves (e.g. a whole layer under `by_layer`) is
    not a weight block: the partition cannot separate them.
    """
    paths = partition.block_paths(params)
    return tuple(label for label in partition.labels(params) if all(is_weight(p) for p in paths[label]))


def block_selection(partition: Partition, params: PyTree, blocks: str = "all") -> tuple[str, ...]:
    """Labels of the blocks ``blocks`` selects (`BLOCK_SELECTIONS`), in partition order.

    ``"all"``: every block; ``"weights"``: `weight_blocks`. Use the labels to restrict a
    diagnostic, e.g. ``curvature.blockwise_slq(..., blocks=block_selection(p, params, "weights"))``.

    Raises:
        ValueError: an unknown selection.
    """
    if blocks not in BLOCK_SELECTIONS:
        raise ValueError(f"unknown block selection {blocks!r}; choose from {', '.join(BLOCK_SELECTIONS)}")
    return partition.labels(params) if blocks == "all" else weight_blocks(partition, params)
