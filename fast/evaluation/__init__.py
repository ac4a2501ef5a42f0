"""Estimators of Appendix B.3: importance-weighted NLL, ELBO, KL, klz|x, active units.

- `evaluate`: streamed evaluation of a model or a run directory (torch or fused Triton).
"""
