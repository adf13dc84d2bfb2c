"""minidiff: a tiny diffusion-model package, built one lesson at a time.

Each module is added by one lesson (see README's lesson table):
    notebook   set-up helper every lesson calls first (seeds, device, budget)
    schedules  01  β_t, α_t, ᾱ_t, SNR
    forward    02  q(x_t | x_0), q(x_{t−1} | x_t, x_0)
    elbo       03  Gaussian KL, the variational bound
    data           2D toy datasets with exact densities, MNIST from the official files
"""

__version__ = "0.1.0"
