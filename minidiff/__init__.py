"""minidiff: a tiny diffusion-model package, built one lesson at a time.

Each module is added by one lesson (README has the lesson table), and later
lessons import what earlier ones built:

    notebook     every lesson  setup(): seeds, threads, figures, device, budget tier
    data.toy         02–07    2D datasets; exact densities and scores where they exist
    data.mnist       02,05,08 MNIST from the official files, checksummed and cached
    schedules        01       β_t, α_t, ᾱ_t, SNR                      (NoiseSchedule)
    forward          02       q(x_t | x_0) = add_noise, q(x_{t−1} | x_t, x_0)
    elbo             03       Gaussian KL, eqs. 11–12, the bound L_T + Σ L_{t−1} + L_0
    embedding        04       sinusoidal timestep embedding
    mlp              04       EpsMLP: ε_θ(x_t, t) for 2D points
    training         04       L_simple (ddpm_loss), train_toy
    sampling         04       Algorithm 2: ddpm_step, ddpm_sample
    metrics          04       energy distance / MMD against the data floor
    unet             05       UNet (optionally class-conditional)
    ema              05       EMA of the weights
    train_unet       05       one training function for every tier, resumable
    ddim             05       DDIM sampler (η, step count)
    classifier, fid  05       the evaluation instrument: classifier FID
    checkpoints      05       save with a card, load with sha256 + weights_only
    score            06       scores, ε ↔ score, denoising score matching
    langevin         07       Langevin, annealed Langevin, predictor–corrector
    guidance         08       classifier-free guidance
    checks           all      the checks behind every exercise
    grader           all      the grader teachers run
"""

__version__ = "0.1.0"
