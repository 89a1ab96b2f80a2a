// A tiny NCSN++ in score_sde's config format (28x28x1, nf 8, one level of attention, dropout on so that its masks
// must replay on resume): fast enough to train a few steps in a test. Shared by the train and export tests.

export const TINY_SCORE = {
  training: { sde: 'vpsde', continuous: true, reduce_mean: true, likelihood_weighting: false },
  data: { image_size: 28, num_channels: 1, centered: true, random_flip: true },
  model: {
    name: 'ncsnpp',
    nf: 8,
    ch_mult: [1, 2],
    num_res_blocks: 1,
    attn_resolutions: [14],
    dropout: 0.1,
    resblock_type: 'biggan',
    embedding_type: 'positional',
    conditional: true,
    skip_rescale: true,
    resamp_with_conv: true,
    fir: false,
    progressive: 'none',
    progressive_input: 'none',
    progressive_combine: 'sum',
    init_scale: 0,
    nonlinearity: 'swish',
    scale_by_sigma: false,
    ema_rate: 0.999,
  },
};
