// A small end-to-end demo of the core: fit y = sin(3x) with a 1-32-32-1 tanh MLP by Adam,
// with gradients from the library's own autograd. Reproducible from the seed.

import { grad } from '../autograd/index.js';
import {
  add,
  arange,
  div,
  keep,
  matmul,
  mean,
  mul,
  randomNormal,
  reshape,
  sin,
  sqrt,
  square,
  sub,
  type Tensor,
  tanh,
  tidy,
} from '../tensor/index.js';

export interface DemoOptions {
  steps: number;
  seed: number;
  lr: number;
  backend?: string;
  /** Called every `every` steps with the current loss. */
  onProgress?: (step: number, loss: number) => void;
  every?: number;
}

export interface DemoResult {
  initialLoss: number;
  finalLoss: number;
  steps: number;
  seconds: number;
}

export async function fitSineDemo(o: DemoOptions): Promise<DemoResult> {
  const opts = { backend: o.backend };
  const n = 64;
  const x = reshape(arange(-1, 1, 2 / n, opts), [n, 1]);
  const y = sin(mul(x, 3));
  // Xavier-style initialisation from the counter-based generator (stream = parameter index)
  const shapes = [
    [1, 32],
    [1, 32],
    [32, 32],
    [1, 32],
    [32, 1],
    [1, 1],
  ];
  let params: Tensor[] = shapes.map((s, i) =>
    keep(mul(randomNormal(s, { seed: o.seed, stream: i, ...opts }), i % 2 === 0 ? 1 / Math.sqrt(s[0] as number) : 0)),
  );
  const loss = (...p: Tensor[]) => {
    const [w1, b1, w2, b2, w3, b3] = p as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor];
    const h1 = tanh(add(matmul(x, w1), b1));
    const h2 = tanh(add(matmul(h1, w2), b2));
    return mean(square(sub(add(matmul(h2, w3), b3), y)));
  };
  const argnums = params.map((_, i) => i);
  // Adam (Kingma & Ba) with its usual constants
  const b1 = 0.9;
  const b2 = 0.999;
  let m = params.map((p) => keep(mul(p, 0)));
  let v = params.map((p) => keep(mul(p, 0)));
  const t0 = performance.now();
  const initialLoss = await tidy(() => loss(...params)).item();
  let last = initialLoss;
  for (let step = 1; step <= o.steps; step++) {
    const next = tidy(() => {
      const gs = grad(loss, { argnums })(...params);
      const mm = m.map((mi, i) => add(mul(mi, b1), mul(gs[i] as Tensor, 1 - b1)));
      const vv = v.map((vi, i) => add(mul(vi, b2), mul(square(gs[i] as Tensor), 1 - b2)));
      const c1 = 1 - b1 ** step;
      const c2 = 1 - b2 ** step;
      const pp = params.map((p, i) =>
        sub(p, mul(div(mul(mm[i] as Tensor, 1 / c1), add(sqrt(mul(vv[i] as Tensor, 1 / c2)), 1e-8)), o.lr)),
      );
      return { pp, mm, vv };
    });
    for (const t of [...params, ...m, ...v]) t.dispose();
    params = next.pp.map(keep);
    m = next.mm.map(keep);
    v = next.vv.map(keep);
    if (o.onProgress && (step % (o.every ?? 100) === 0 || step === o.steps)) {
      last = await tidy(() => loss(...params)).item();
      o.onProgress(step, last);
    }
  }
  const finalLoss = await tidy(() => loss(...params)).item();
  for (const t of [...params, ...m, ...v, x, y]) t.dispose();
  return { initialLoss, finalLoss, steps: o.steps, seconds: (performance.now() - t0) / 1000 };
}
