// The model fixture parity runs (../shared/fixtures/ddpmpp, adm, wrn), written once for any
// backend: the cpu tests (test/nn/*.test.ts) and the webgpu tests (test/webgpu/models.test.ts)
// pass their model's forward and a backend, and get max|ours - ref| / max|ref| per array.

import { join } from 'node:path';
import * as T from '../../src/index.js';
import { FIXTURES, fixtureArray, fixtureTensor, type Rows, readAndDispose, relErr } from '../harness/fixtures.js';

export const DDPMPP = join(FIXTURES, 'ddpmpp');
export const DDPMPP_NF8 = join(DDPMPP, 'nf8_with_adam_state');
export const ADM = join(FIXTURES, 'adm');
export const WRN = join(FIXTURES, 'wrn');

/** The fixtures' tolerance: max|ours - ref| <= 1e-4 * max|ref| per array (their READMEs). */
export const FIXTURE_TOL = 1e-4;

export interface OutputAndGrad {
  out: Float64Array;
  /** d/dx of sum(w * f(x)); null for a forward-only run. */
  grad: Float64Array | null;
  /** derived(out), computed without recording. */
  derived: Float64Array[];
}

/**
 * f(x) and (with a cotangent w) the gradient of sum(w * f(x)) with respect to x, read back from
 * x's backend. Takes ownership of x and w; frees everything it made, graph included.
 */
export async function outputAndGrad(
  f: (x: T.Tensor) => T.Tensor,
  x: T.Tensor,
  w: T.Tensor | null,
  derived: (out: T.Tensor) => T.Tensor[] = () => [],
): Promise<OutputAndGrad> {
  let ts: T.Tensor[];
  try {
    ts = T.tidy(() => {
      if (!w) {
        const out = T.noGrad(() => f(x));
        return [out, ...T.noGrad(() => derived(out))];
      }
      const { out, vjpFn } = T.vjp(f, x);
      const [g] = vjpFn(w);
      return [out, g as T.Tensor, ...T.noGrad(() => derived(out))];
    });
  } finally {
    T.dispose(x, w);
  }
  const host = await readAndDispose(...ts);
  const out = host.shift() as Float64Array;
  const grad = w ? (host.shift() as Float64Array) : null;
  return { out, grad, derived: host };
}

interface RunOptions {
  backend?: string;
  /** Batch rows of the fixture to run (all by default); the samples are independent. */
  rows?: Rows;
}

export interface DdpmppErrors {
  raw: number;
  score: number;
  gradX: number;
  /** Error against the output of the checkpoint's non-EMA weights: large when the EMA ones load. */
  vsModelWeights: number;
}

/**
 * score_sde's NCSN++ (ddpmpp fixtures): the raw output at (x, labels), the score -raw / std(t) of
 * the continuous VP-SDE, and the input gradient of sum(w * raw).
 */
export async function ddpmppErrors(
  dir: string,
  forward: (x: T.Tensor, labels: T.Tensor) => T.Tensor,
  opts: RunOptions = {},
): Promise<DdpmppErrors> {
  const labels = fixtureTensor(dir, 'labels', opts);
  const std = fixtureTensor(dir, 'std', opts);
  const b = std.size;
  try {
    const r = await outputAndGrad(
      (x) => forward(x, labels),
      fixtureTensor(dir, 'x', opts),
      fixtureTensor(dir, 'vjp_weight', opts),
      (out) => [T.div(T.neg(out), T.reshape(std, [b, 1, 1, 1]))],
    );
    const ref = (name: string) => fixtureArray(dir, name, opts.rows).data;
    return {
      raw: relErr(r.out, ref('raw_output_ema')),
      score: relErr(r.derived[0] as Float64Array, ref('score')),
      gradX: relErr(r.grad as Float64Array, ref('grad_x_of_sum_w_raw')),
      vsModelWeights: relErr(r.out, ref('raw_output_modelweights_diagnostic')),
    };
  } finally {
    T.dispose(labels, std);
  }
}

/**
 * guided-diffusion's ADM UNet (adm fixture): the output at (x, t) and, when withGrad, the input
 * gradient of sum(w * output).
 */
export async function admErrors(
  forward: (x: T.Tensor, t: T.Tensor) => T.Tensor,
  opts: RunOptions & { withGrad: boolean },
): Promise<{ output: number; gradX: number | null }> {
  const t = fixtureTensor(ADM, 't', opts);
  try {
    const r = await outputAndGrad(
      (x) => forward(x, t),
      fixtureTensor(ADM, 'x', opts),
      opts.withGrad ? fixtureTensor(ADM, 'vjp_weight', opts) : null,
    );
    const ref = (name: string) => fixtureArray(ADM, name, opts.rows).data;
    return {
      output: relErr(r.out, ref('output')),
      gradX: r.grad ? relErr(r.grad, ref('grad_x_of_sum_w_output')) : null,
    };
  } finally {
    t.dispose();
  }
}

/** RobustBench's WideResNet (wrn fixture): logits and the input gradient of sum(w * logits). */
export async function wrnErrors(
  forward: (x: T.Tensor) => T.Tensor,
  opts: RunOptions = {},
): Promise<{ logits: number; gradX: number }> {
  const r = await outputAndGrad(forward, fixtureTensor(WRN, 'x', opts), fixtureTensor(WRN, 'vjp_weight', opts));
  const ref = (name: string) => fixtureArray(WRN, name, opts.rows).data;
  return { logits: relErr(r.out, ref('logits')), gradX: relErr(r.grad as Float64Array, ref('grad_x_of_sum_w_logits')) };
}
