"""Functional cores of spaq's metrics: pure functions on tensors ``(..., channels, time)``,
differentiable where the maths allows. The classes in :mod:`spaq.metrics` own weights and
configuration and call these."""
