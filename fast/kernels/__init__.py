"""Fused Triton kernels: RNVP flow blocks and the importance-weighted Bernoulli NLL."""
