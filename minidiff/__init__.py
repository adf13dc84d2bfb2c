"""minidiff: a tiny diffusion-model package, built one lesson at a time.

Layered from the bottom up; a module imports only from the layers above it in this list
(tests/test_layout.py checks it), and each is added by one lesson:

    utils            all      argument checks, seeded random numbers, the device, progress bars
    paths            02,05    where data, checkpoints and caches are found; sha256 of files
    data.toy         02–07    2D datasets; exact densities and scores where they exist
    data.mnist       02,05,08 MNIST from the official files, checksummed and cached
    data.sound       16       labelled synthetic clips at 8 kHz: Karplus–Strong plucks, chirps, drums
    data.molecules   16       RDKit ETKDG conformers of 24 small molecules, padded, cached and verified
    data.moving      17       bouncing-digit videos: reflected straight-line tracks, sub-pixel rendering
    schedules        01       β_t, α_t, ᾱ_t, SNR                           (NoiseSchedule)
    forward          02–04    q(x_t | x_0) = add_noise, the posterior, predict_x0, σ_t² tables
    losses           04       L_simple (ddpm_loss)
    vpred            05       v-prediction, min-SNR-γ weights, EpsFromV (the shipped recipe)
    elbo             03       Gaussian KL, DDPM eqs. 5, 11–13: the bound L_T + Σ L_{t−1} + L_0
    embedding        04       sinusoidal timestep embedding
    mlp              04       EpsMLP: ε_θ(x_t, t) for 2D points
    unet             05       UNet (optionally class-conditional)
    ema              05       EMA of the weights
    training         04       the one training loop: train(), lr_at, resumable state, hooks
    sampling         04       the one sampling loop `simulate`, DDPM's ddpm_step / ddpm_sample
    ddim             05       DDIM step and sampler
    score            06       scores, ε ↔ score, denoising score matching
    langevin         07       Langevin, annealed Langevin, predictor–corrector
    guidance         08       classifier-free guidance: label dropout, the guided ε, cfg_loss
    sde              09       VP/VE SDEs, reverse SDE, probability-flow ODE, Euler–Maruyama, Heun, RK45
    likelihood       09       exact log p by the PF-ODE: exact and Hutchinson divergences, bits/dim
    samplers         10       the σ view: D(x; σ), Karras levels, Euler, Heun, EDM churn, DPM-Solver++(2M)
    vdm              11       VDM: log-SNR γ(t), the losses L_T and L_∞, a learned monotone schedule, VDM's bound in bits/dim
    flow             12       flow matching and reflow: straight path, velocity loss, Euler, v ↔ ε ↔ x_0 ↔ score, w(λ)
    inpaint          13       inpainting: masks, replacement, RePaint's forward jump and time list, over simulate
    editing          13       SDEdit; denoising by Tweedie's posterior mean or the reverse chain; PSNR
    anomaly          13       ELBO and reconstruction scores, AUROC/ROC, corruptions and non-digit test sets
    text             14       captions measured from MNIST, the tokenizer, the text encoder
    crossattn        14       cross-attention, TextUNet, caption dropout and guidance
    autoencoder      15       a KL-regularised MNIST autoencoder
    latent           15       the latent scale factor, latent loss and sampler (encode → diffuse → decode)
    unet1d           16       UNet1d: the 1D U-Net for sound (patches, factor-4 levels, class-conditional)
    egnn             16       zero-CoM noise and loss, the EGCL layer, the EGNN denoiser, sample_conformers
    video            17       factorised space-time U-Net: fold frames, temporal attention; CoM track, bounce fit
    gan              18       DCGAN, non-saturating losses, two players in training.train, divergence monitor, diffusion GAN
    distill          18       progressive distillation (Salimans & Ho 2022) of the lesson-05 v-model
    superres         19       SR3-style super-resolution: block-mean degradation, bicubic condition channel, loss, sampler
    checkpoints      05       save with a card, load with sha256 + weights_only
    eval             04–08,16–19 metrics (2D distances), classifier, fid, guidance trade-off numbers; sound, molecules
                              (16), coverage: precision/recall (18), cas, memorisation (19)
    scripts          04–19    command lines that train and ship the checkpoints

Beside the library, never imported by it: `minidiff.course` (lesson setup, checks, grader).
"""

__version__ = "0.2.0"
