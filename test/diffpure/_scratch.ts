import { readFileSync } from 'node:fs';
import { purify, purifyCentered } from '../../src/diffpure/purify.js';
import * as T from '../../src/index.js';
import { extractStateDict, loadTorchCheckpoint } from '../../src/nn/io/index.js';
import { NCSNpp } from '../../src/nn/models/ncsnpp.js';
import { BrownianReplay } from '../../src/sde/index.js';
import { npy, relMaxErr, tensorOf } from '../sde/helpers.js';

const sub = process.argv[2] ?? '';
const d = `/work/shared/fixtures/diffpure_revsde${sub ? `/${sub}` : ''}`;
const dt = sub ? 1e-3 : 0.01;
const DD = '/work/shared/fixtures/ddpmpp';
const cfg = JSON.parse(readFileSync(`${DD}/meta.json`, 'utf8')).config;
const m = T.tidy(() => new NCSNpp(cfg)).eval();
m.loadStateDict(
  extractStateDict(loadTorchCheckpoint(`${DD}/checkpoint.pth`), {
    weights: 'ema',
    parameterNames: m.emaParameterNames(),
  }),
);
let nfe = 0;
const model = (x: T.Tensor, l: T.Tensor) => {
  nfe++;
  return m.forward(x, l);
};
const xIn = tensorOf(d, 'x_in.npy');
const noise = tensorOf(d, 'forward_noise.npy');
const w = tensorOf(d, 'loss_weight.npy');
const inc = npy(d, 'brownian_increments.npy');
const grid = Array.from(npy(d, 'time_grid.npy').data);
const [, B, D] = inc.shape as [number, number, number];
const bm = new BrownianReplay({ times: grid, increments: inc.data, shape: [B, D] });
let t = performance.now();
const out = T.tidy(() =>
  T.noGrad(() =>
    purifyCentered(T.mul(T.sub(xIn, 0.5), 2), { model, scoreType: 'score_sde', dt, noise, bm }),
  ).dataSync(),
);
console.log('purified', relMaxErr(out, npy(d, 'purified.npy').data), (performance.now() - t) / 1000, 's nfe', nfe);
for (const mode of ['exact', 'continuous'] as const) {
  nfe = 0;
  t = performance.now();
  const g = T.tidy(() =>
    (
      T.grad((x: T.Tensor) =>
        T.sum(T.mul(w, T.sub(T.mul(purify(x, { model, scoreType: 'score_sde', dt, noise, bm, mode }), 2), 1))),
      )(xIn) as T.Tensor
    ).dataSync(),
  );
  const ref = mode === 'exact' ? 'grad_x_in_autograd.npy' : 'grad_x_in_adjoint_euler.npy';
  console.log(mode, relMaxErr(g, npy(d, ref).data), (performance.now() - t) / 1000, 's nfe', nfe);
}
