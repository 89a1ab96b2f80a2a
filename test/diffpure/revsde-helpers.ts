// Shared by the diffpure_revsde fixture tests (cpu: fixture_diffpure_revsde.test.ts, webgpu:
// test/webgpu/diffpure_revsde.test.ts): the case's setup (DDPM++ with the EMA weights, the stored
// forward noise and Brownian increments replayed by BrownianReplay, t* 0.1) on a chosen backend,
// and one purify() under vjp with its input gradient, read back to the host.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadNetwork, type Network } from '../../src/diffpure/models.js';
import { type PurifyOptions, purify } from '../../src/diffpure/purify.js';
import * as T from '../../src/index.js';
import { BrownianReplay } from '../../src/sde/index.js';
import { fixtureDir, npy, relMaxErr } from '../sde/helpers.js';

export const REVSDE_BASE = fixtureDir('diffpure_revsde');
export const REVSDE_DDPMPP = fixtureDir('ddpmpp');
/** Outputs, drifts and gradients: 1e-4 max|ref| (issue 5; see the cpu test's header). */
export const REVSDE_TOL = 1e-4;

/**
 * Let the event loop turn before a long synchronous computation: vitest's worker RPC times out
 * (60 s) when a reply waits behind more than a minute of blocked loop, e.g. two 35 s tests in a row.
 * 300 ms covers the runner's 100 ms throttle on task updates and the reply.
 */
export const yieldToLoop = () => new Promise((r) => setTimeout(r, 300));

/** The first `batch` rows (leading axis) of a fixture array, or all of them. */
function leadingRows(a: { shape: number[]; data: Float32Array | Float64Array }, batch?: number) {
  const n = a.shape[0] as number;
  if (batch === undefined || batch === n) return a;
  if (batch < 1 || batch > n) throw new Error(`batch ${batch}: the fixture has ${n} images`);
  const per = a.data.length / n;
  return { shape: [batch, ...a.shape.slice(1)], data: a.data.slice(0, batch * per) };
}

/** `dir/file` as float32 on `backend` (default: the current one), its first `batch` rows. */
function tensorRows(dir: string, file: string, backend?: string, batch?: number): T.Tensor {
  const a = leadingRows(npy(dir, file), batch);
  return T.fromArray(a.data, a.shape, { dtype: 'float32', backend });
}

/** A reference array's first `batch` images. */
export function refRows(dir: string, file: string, batch?: number): Float32Array | Float64Array {
  return leadingRows(npy(dir, file), batch).data;
}

/** max|got - ref| / max|ref| into report[what], expected within tol. */
export function checker(report: Record<string, number>) {
  return (what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol = REVSDE_TOL) => {
    const e = relMaxErr(got, ref);
    report[what] = e;
    expect(e, what).toBeLessThanOrEqual(tol);
  };
}

export interface RevsdeCase {
  net: Network;
  opts: PurifyOptions;
  xIn: T.Tensor;
  w: T.Tensor;
  /** Network evaluations since the last purifyWithGrad() (or since loading). */
  evals: number;
  dispose(): void;
}

/**
 * The case in `dir` at step dt, every tensor on `backend` (default: the current one): the
 * product's loader (shape-only build, then the checkpoint's EMA weights, which DiffPure's
 * restore_checkpoint + ema.copy_to use, strictly), the inputs, the stored forward noise and the
 * stored Brownian increments. With `batch`, only the first `batch` images.
 */
export async function loadRevsdeCase(
  dir: string,
  dt: number,
  o: { backend?: string; batch?: number } = {},
): Promise<RevsdeCase> {
  const ddpmpp = REVSDE_DDPMPP as string;
  const cfg = JSON.parse(readFileSync(join(ddpmpp, 'meta.json'), 'utf8')).config;
  const net = await loadNetwork('ddpmpp', cfg, join(ddpmpp, 'checkpoint.pth'), o.backend);
  const inc = npy(dir, 'brownian_increments.npy');
  const [N, Bfull, D] = inc.shape as [number, number, number];
  const B = o.batch ?? Bfull;
  let increments = inc.data;
  if (B !== Bfull) {
    // [N, B, D]: the first B images of every increment
    increments = new Float32Array(N * B * D);
    for (let k = 0; k < N; k++) increments.set(inc.data.subarray(k * Bfull * D, (k * Bfull + B) * D), k * B * D);
  }
  const bm = new BrownianReplay({
    times: Array.from(npy(dir, 'time_grid.npy').data),
    increments,
    shape: [B, D],
    backend: o.backend,
  });
  const c: RevsdeCase = {
    net,
    xIn: T.keep(tensorRows(dir, 'x_in.npy', o.backend, o.batch)),
    w: T.keep(tensorRows(dir, 'loss_weight.npy', o.backend, o.batch)),
    opts: {
      model: (x, labels) => {
        c.evals++;
        return net.forward(x, labels);
      },
      scoreType: 'score_sde',
      tStar: 0.1,
      dt,
      noise: T.keep(tensorRows(dir, 'forward_noise.npy', o.backend, o.batch)),
      bm,
    },
    evals: 0,
    dispose() {
      net.module.dispose();
      T.dispose(c.xIn, c.w, c.opts.noise);
    },
  };
  return c;
}

/**
 * purify under vjp: the purified images in [-1, 1] and dL/dx_in (L = sum(w purified), so
 * dL/dout = 2 w), read back to the host, with the seconds and the network evaluations logged.
 */
export async function purifyWithGrad(
  c: RevsdeCase,
  label: string,
  mode: 'exact' | 'continuous',
  more: Partial<PurifyOptions> = {},
): Promise<{ purified: Float64Array; grad: Float64Array }> {
  c.evals = 0;
  const t0 = performance.now();
  const [purified, grad] = T.tidy(() => {
    const { out, vjpFn, release } = T.vjp((x: T.Tensor) => purify(x, { ...c.opts, mode, ...more }), c.xIn);
    const p = T.sub(T.mul(out, 2), 1); // (the vjp releases out)
    const [g] = vjpFn(T.mul(c.w, 2));
    release();
    return [p, g as T.Tensor];
  });
  const host = await Promise.all([purified, grad].map(async (t) => Float64Array.from(await t.data())));
  T.dispose(purified, grad);
  const seconds = (performance.now() - t0) / 1000;
  console.log(`${label} ${mode}: ${seconds.toFixed(1)} s, ${c.evals} network evaluations`);
  return { purified: host[0] as Float64Array, grad: host[1] as Float64Array };
}
