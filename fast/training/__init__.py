"""Training (Appendix B.3, Algorithm B.1): objective, schedules of the three strategies, the loop.

- `objective`: negative warm-up ELBO + L2 + optional Reg[q(z)].
- `schedule`: the phases of joint, post-hoc and iterative training (paper lengths, scalable).
- `loop`: `train(TrainConfig, out_dir)`, which executes a schedule into a run directory.
"""
