// Reading the ../shared/fixtures (.npy arrays and meta.json made by the official PyTorch code) on
// any backend, and the error measure the fixtures state their tolerances in. Shared by the cpu
// and webgpu fixture tests (test/nn, test/sde, test/webgpu).

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as T from '../../src/index.js';
import { readNpy } from '../../src/nn/io/npy.js';

const here = dirname(fileURLToPath(import.meta.url));
/** ../shared/fixtures next to the repository. */
export const FIXTURES = join(here, '..', '..', '..', 'shared', 'fixtures');

/** The fixture's directory (name relative to FIXTURES), or null when it has no meta.json. */
export function fixtureDir(name: string): string | null {
  const d = join(FIXTURES, name);
  return existsSync(join(d, 'meta.json')) ? d : null;
}

export function readMeta<M>(dir: string): M {
  return JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as M;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] as number));
  return m;
}

/** max|got - ref| / max|ref|, the measure the fixtures' READMEs state their tolerances in. */
export function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} vs reference ${ref.length}`);
  let m = 0;
  for (let i = 0; i < ref.length; i++) m = Math.max(m, Math.abs((got[i] as number) - (ref[i] as number)));
  return m / maxAbs(ref);
}

/** Rows [start, start + count) of the leading (batch) axis. */
export interface Rows {
  start: number;
  count: number;
}

export interface HostArray {
  shape: number[];
  data: Float32Array;
}

/** `dir/name.npy` as float32 (every fixture array is float32), optionally only some batch rows. */
export function fixtureArray(dir: string, name: string, rows?: Rows): HostArray {
  const a = readNpy(join(dir, `${name}.npy`));
  const data = Float32Array.from(a.data);
  if (!rows) return { shape: a.shape, data };
  const n = a.shape[0] as number;
  if (rows.start < 0 || rows.count < 1 || rows.start + rows.count > n) {
    throw new Error(`${name}.npy has ${n} rows; rows ${rows.start} .. ${rows.start + rows.count - 1} requested`);
  }
  const per = data.length / n;
  return {
    shape: [rows.count, ...a.shape.slice(1)],
    data: data.slice(rows.start * per, (rows.start + rows.count) * per),
  };
}

/** `dir/name.npy` as a float32 tensor on `backend` (default: the current backend). */
export function fixtureTensor(dir: string, name: string, opts: { backend?: string; rows?: Rows } = {}): T.Tensor {
  const a = fixtureArray(dir, name, opts.rows);
  return T.fromArray(a.data, a.shape, { dtype: 'float32', backend: opts.backend });
}

/** Host copies of tensors on any backend (awaits the readback), then disposes them. */
export async function readAndDispose(...ts: T.Tensor[]): Promise<Float64Array[]> {
  try {
    return await Promise.all(ts.map(async (t) => Float64Array.from(await t.data())));
  } finally {
    T.dispose(ts);
  }
}
