// The attacks fixture (../shared/fixtures/attacks): official runs of fra31/auto-attack 6482e4d and friends on a
// small RobustBench WideResNet trained on Fashion-MNIST, with every random draw recorded (see its README).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AttackModel, Images } from '../../../src/diffpure/attacks/model.js';
import { extractStateDict, loadTorchCheckpoint } from '../../../src/nn/io/index.js';
import { readNpy } from '../../../src/nn/io/npy.js';
import { WideResNet } from '../../../src/nn/models/wrn.js';
import { FIXTURES } from '../../harness/fixtures.js';

export const ATTACKS = join(FIXTURES, 'attacks');
export const haveAttacks = existsSync(join(ATTACKS, 'meta.json'));

export function npy(rel: string): { data: Float32Array | Float64Array; shape: number[] } {
  const a = readNpy(join(ATTACKS, rel));
  return { data: a.data, shape: [...a.shape] };
}

export const f32 = (rel: string) => Float32Array.from(npy(rel).data);
export const bools = (rel: string) => Array.from(npy(rel).data, (v) => v !== 0);

export function fixtureImages(): Images {
  const a = npy('x.npy');
  return { data: Float32Array.from(a.data), shape: a.shape as [number, number, number, number] };
}

export const fixtureLabels = () => Int32Array.from(npy('y.npy').data);

/** The fixture's WideResNet-16-2 in eval mode on `backend`. */
export function fixtureModel(backend = 'cpu'): { model: AttackModel; net: WideResNet } {
  const net = new WideResNet({ depth: 16, widen_factor: 2, num_classes: 10 }).eval();
  net.loadStateDict(extractStateDict(loadTorchCheckpoint(join(ATTACKS, 'model.pt'))));
  if (backend !== 'cpu') throw new Error('fixtureModel: cpu only here; move the module for other backends');
  return { model: { classify: (x) => net.forward(x), backend }, net };
}

/** Rows of a [R, ...] array as separate arrays of `per` values each. */
export function rowsOf(a: ArrayLike<number>, per: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let o = 0; o < a.length; o += per) out.push(Float32Array.from(Array.prototype.slice.call(a, o, o + per)));
  return out;
}
