"""Models of the paper (Appendix B.2): the VAE of any architecture, its Real NVP flows, densities.

- `distributions`: diagonal / unit Gaussian and Bernoulli log-densities, log-mean-exp.
- `networks`: the encoder and decoder trunks of DenseVAE, ConvVAE, ResnetVAE and PixelVAE.
- `flows`: Real NVP (InvertibleDense -> CouplingLayer -> ActNorm, K blocks), Eqs. 4 and B.1.
- `vae`: `VAE` (q(z|x), p(z), p(x|z), log weights of Eqs. 1-5) and `build_vae(ModelConfig)`.
- `convert`: parameters to and from the NumPy reference (`vaeprior.reference`).
"""
