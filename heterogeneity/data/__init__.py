"""heterogeneity.data: real data that works offline, synthetic tasks, deterministic batching.

Classification (`Dataset`: numpy x_train, y_train, x_val, y_val, num_classes; `.train`/`.val`
give `{"x", "y"}` dicts):
  load_digits(*, layout="flat"|"image", scaling="unit"|"standardize"|"none", val_fraction, key)
      scikit-learn's 1,797 real 8x8 digits (MLP, CNN, ViT, MLP-mixer).
  synthetic_sequences(task="order"|"majority", *, key, num_train, num_val, seq_len, vocab_size,
      difficulty)  two-class sequence tasks for the encoder, label noise difficulty / 2.
  from_arrays(x, y, num_classes=None, *, x_val, y_val, val_fraction, key, stratify)  user arrays.

Character-level language modelling (`CharCorpus`: vocab, encode, decode, train, val, sample_batch):
  load_shakespeare(*, val_fraction=0.1, max_chars=None)  the shipped corpus [Tomihari25, App. D.10].
  load_text(path, *, val_fraction, vocab, max_chars)      any UTF-8 text file.

Batching (same key, same batches):
  sample_batch(x, y, batch_size, key), sample_split(split, batch_size, key),
  batches(split, batch_size, key, *, num_steps=None, drop_remainder=True),
  sample_windows(tokens, batch_size, block_size, key),
  microbatch(batch, num_microbatches) / unmicrobatch(batch)  for averaged micro-batch HVPs.
"""
from heterogeneity.data._arrays import Dataset, as_key, from_arrays, host_rng, split_indices
from heterogeneity.data._batching import MicroBatched, batches, microbatch, sample_batch, sample_split, unmicrobatch
from heterogeneity.data._digits import load_digits
from heterogeneity.data._synthetic import (
    TASKS as SEQUENCE_TASKS,
    bayes_accuracy,
    majority_threshold,
    sample_sequences,
    sequence_labels,
    synthetic_sequences,
)
from heterogeneity.data._text import (
    SHAKESPEARE_SHA256,
    CharCorpus,
    corpus_from_text,
    load_shakespeare,
    load_text,
    read_text,
    sample_windows,
    shakespeare_text,
)

__all__ = [
    "SEQUENCE_TASKS", "SHAKESPEARE_SHA256", "CharCorpus", "Dataset", "MicroBatched", "as_key", "batches", "bayes_accuracy",
    "corpus_from_text", "from_arrays", "host_rng", "load_digits", "load_shakespeare", "load_text", "majority_threshold",
    "microbatch", "read_text", "sample_batch", "sample_sequences", "sample_split", "sample_windows",
    "sequence_labels", "shakespeare_text", "split_indices", "synthetic_sequences", "unmicrobatch",
]
