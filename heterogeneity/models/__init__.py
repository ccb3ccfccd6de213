"""heterogeneity.models: Flax NNX models with stable, role-readable parameter paths.

Models (tiny defaults for CPU tests; paper-scale ``preset``s for GPU):

======================  =====================  ==================================================
``build`` name          class                  paper use
======================  =====================  ==================================================
``mlp``                 `MLP`                  [Zhang24, App. D.3] (layer output scale ``c``)
``cnn``                 `CNN`                  block-homogeneous baseline (optional BatchNorm)
``resnet``              `ResNet`               [Tomihari25, Fig. 3(c)], [Zhang24, Fig. 4], [Xie24, §4.3]
``transformer``         `TransformerEncoder`   [Tomihari25, §4.7 / Table 2] (``norm="pre"|"post"|"none"``)
``gpt``                 `GPT`                  [Tomihari25, App. D.10] (nanoGPT), [Zhang24, App. D.2]
``vit``                 `ViT`                  [Tomihari25, Fig. 3(b)], [Zhang24, Fig. 4]
``mixer``               `MLPMixer`             [Zhang24, Fig. 5(b, c)]
======================  =====================  ==================================================

Pure functions: ``apply_fn, params = functional(model, batch_stats="eval"|"batch")``;
``classification_loss(apply_fn)`` / ``lm_loss(apply_fn)`` give ``loss_fn(params, batch)``.
Transformers return attention probabilities with ``return_attention=True``.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

from flax import nnx

from heterogeneity._deprecation import REMOVED_IN
from heterogeneity.models._cnn import CNN, ResNet
from heterogeneity.models._functional import classification_loss, functional, lm_loss
from heterogeneity.models._gpt import GPT
from heterogeneity.models._mixer import MixerBlock, MLPMixer
from heterogeneity.models._mlp import MLP
from heterogeneity.models._transformer import (
    NORMS,
    FeedForward,
    SelfAttention,
    TransformerBlock,
    TransformerEncoder,
)
from heterogeneity.models._vit import ViT

__all__ = [
    "MLP", "CNN", "ResNet", "TransformerEncoder", "GPT", "ViT", "MLPMixer",
    "SelfAttention", "FeedForward", "TransformerBlock", "MixerBlock", "NORMS",
    "functional", "classification_loss", "lm_loss", "build", "MODELS", "PRESETS",
]

MODELS: dict[str, type[nnx.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "resnet": ResNet,
    "transformer": TransformerEncoder,
    "gpt": GPT,
    "vit": ViT,
    "mixer": MLPMixer,
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "mlp": {
        # [Zhang24, App. D.3]: 4-layer ReLU MLP on MNIST, hidden widths 300-128-64; vary output_scale c = 1..15.
        "mnist_mlp": dict(in_features=784, hidden=(300, 128, 64), num_classes=10),
    },
    "cnn": {
        "cifar10": dict(in_channels=3, channels=(32, 64, 128), num_classes=10, batch_norm=True),
    },
    "resnet": {
        # ResNet-18 widths/depths (CIFAR stem); [Xie24, §4.3] (CIFAR-10), [Tomihari25, Fig. 3(c)] (Flowers102: num_classes=102).
        "resnet18": dict(in_channels=3, channels=(64, 128, 256, 512), blocks=(2, 2, 2, 2), num_classes=10,
                         batch_norm=True),
    },
    "transformer": {
        # RoBERTa-base shape ([Tomihari25, §4.7, Table 2]: RTE, 2 classes); Post-LN as the pre-trained model.
        "roberta_base": dict(vocab_size=50265, max_len=512, d_model=768, num_heads=12, num_layers=12,
                                     d_ff=3072, num_classes=2, norm="post", pool="first"),
    },
    "gpt": {
        # nanoGPT shakespeare_char config ([Tomihari25, App. D.10]; [Zhang24, App. D.1] "GPT2-nano").
        "nanogpt_char": dict(vocab_size=65, max_len=256, d_model=384, num_heads=6, num_layers=6, d_ff=1536),
        # [Zhang24, App. D.2 / Fig. 2]: 2 heads, width 4, MLP width 4, no LayerNorm (num_layers 2, 4 or 8),
        # GPT-2 vocabulary, sequences of 4 tokens.
        "tiny_no_ln": dict(vocab_size=50257, max_len=4, d_model=4, num_heads=2, num_layers=2, d_ff=4,
                                   norm="none"),
        "gpt2_small": dict(vocab_size=50257, max_len=1024, d_model=768, num_heads=12, num_layers=12, d_ff=3072),
    },
    "vit": {
        # ViT-Base/16 shape ([Tomihari25]: Flowers102 with 102 classes; [Zhang24, Fig. 4]: ImageNet).
        "vit_base": dict(image_size=224, patch_size=16, in_channels=3, d_model=768, num_heads=12,
                                 num_layers=12, d_ff=3072, num_classes=102),
    },
    "mixer": {
        # Mixer-B/16 ([Zhang24, Fig. 5(b, c)]).
        "mixer_b16": dict(image_size=224, patch_size=16, in_channels=3, d_model=768, tokens_hidden=384,
                                  channels_hidden=3072, num_layers=12, num_classes=1000),
    },
}

DEPRECATED_PRESETS = {
    "seed001_mnist": "mnist_mlp", "seed000_roberta_base": "roberta_base", "seed000_nanogpt": "nanogpt_char",
    "seed001_tiny_no_ln": "tiny_no_ln", "seed000_vit_base": "vit_base", "seed001_mixer_b16": "mixer_b16",
}
"""Old preset names (named after the papers' file numbers), kept for one release."""


def build(name: str, *, preset: str | None = None, seed: int = 0, rngs: nnx.Rngs | None = None,
          **config: Any) -> nnx.Module:
    """Build a registered model: ``build("transformer", norm="post", num_layers=4)``.

    ``preset`` loads a paper-scale configuration from `PRESETS` (explicit ``config`` keys
    override it). Parameters are initialised from ``rngs`` or ``nnx.Rngs(seed)``, inside one
    `nnx.jit` (a single compiled init program instead of one XLA compilation per parameter
    shape, compiled once per model class and config, so new seeds reuse it; same numbers as
    eager construction up to float rounding). Unknown names, presets or
    config keys raise `ValueError` listing the valid ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}")
    cls = MODELS[name]
    cfg: dict[str, Any] = {}
    if preset is not None:
        if preset in DEPRECATED_PRESETS:
            warnings.warn(f"preset {preset!r} is deprecated and will be removed in heterogeneity {REMOVED_IN}; use "
                          f"{DEPRECATED_PRESETS[preset]!r}", DeprecationWarning, stacklevel=2)
            preset = DEPRECATED_PRESETS[preset]
        if preset not in PRESETS.get(name, {}):
            raise ValueError(f"unknown preset {preset!r} for model {name!r}; available: {sorted(PRESETS.get(name, {}))}")
        cfg.update(PRESETS[name][preset])
    cfg.update(config)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "rngs")]
    bad = sorted(set(cfg) - set(valid))
    if bad:
        raise ValueError(f"unknown config key(s) {bad} for model {name!r}; valid keys: {valid}")
    rngs = rngs if rngs is not None else nnx.Rngs(int(seed))
    return _init_program(cls, cfg)(rngs)


_INIT_PROGRAMS: dict[Any, Callable] = {}


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    hash(value)  # TypeError for anything else unhashable
    return (type(value).__name__, value)  # 1 and 1.0 (and True) stay apart


def _init_program(cls: type, cfg: dict[str, Any]) -> Callable:
    """One jitted initializer per model class and config, so a sweep's runs (new seeds) compile it once."""
    try:
        key = (cls, _frozen(cfg))
    except TypeError:  # an unhashable config value: compile this one afresh
        return nnx.jit(lambda r: cls(**cfg, rngs=r))
    if key not in _INIT_PROGRAMS:
        if len(_INIT_PROGRAMS) >= 64:
            _INIT_PROGRAMS.clear()
        kwargs = dict(cfg)
        _INIT_PROGRAMS[key] = nnx.jit(lambda r: cls(**kwargs, rngs=r))
    return _INIT_PROGRAMS[key]
