"""PyTorch path: models, training strategies, evaluation and CLI (Triton kernels in `kernels/`)."""
