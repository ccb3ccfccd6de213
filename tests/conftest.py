"""Test configuration.

Eight simulated CPU devices are set up before JAX is imported, so the multi-device
majority-vote tests run under `jax.shard_map` on CPU. Library code never changes
global JAX flags; tests that need float64 use the `jax.enable_x64(True)` context.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
