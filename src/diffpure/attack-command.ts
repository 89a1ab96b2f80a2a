// `diffpure autoattack`: AutoAttack (standard / plus / rand / custom) on images in [0, 1] (x.npy, labels y.npy)
// against a classifier checkpoint, or against DiffPure's defended classifier (--score-weights): the official log
// lines on stdout, the adversarial images to --out, a JSON summary with --json.

import { readNpy, writeNpy } from '../nn/io/index.js';
import { initBackend, type Tensor, tidy } from '../tensor/index.js';
import {
  ATTACK_NAMES,
  type AttackName,
  autoAttack,
  type StageSettings,
  VERSIONS,
  type Version,
} from './attacks/autoattack.js';
import type { AttackModel, Images } from './attacks/model.js';
import { NORMS, type Norm } from './attacks/projections.js';
import { parseVerdict } from './attacks/verdicts.js';
import { ddpmPurifier } from './ddpm-purify.js';
import { defendedClassifier, type GradientMode } from './defense.js';
import { loadNetwork, type ModelKind } from './models.js';

export interface AutoAttackArgs {
  kind: ModelKind;
  config: unknown;
  weights: string;
  x: string;
  y: string;
  eps: number;
  norm: string;
  version: string;
  attacks?: string;
  eotIter?: number;
  nIter?: number;
  seed: number;
  bs: number;
  verdict: string;
  out?: string;
  json: boolean;
  backend: string;
  /** DiffPure's defence: the score model (ddpmpp or adm) in front of the classifier. */
  score?: { kind: ModelKind; config: unknown; weights: string; tStar: number; dt: number; gradient: string };
}

function readImages(path: string): Images {
  const a = readNpy(path);
  if (a.shape.length !== 4)
    throw new Error(`--x '${path}' has shape [${a.shape.join(', ')}]; expected images [B, C, H, W]`);
  return { data: Float32Array.from(a.data), shape: a.shape as unknown as [number, number, number, number] };
}

function readLabels(path: string, b: number): Int32Array {
  const a = readNpy(path);
  if (a.shape.length !== 1 || a.shape[0] !== b) {
    throw new Error(`--y '${path}' has shape [${a.shape.join(', ')}]; expected [${b}] labels, one per image of --x`);
  }
  const bad = Array.from(a.data).findIndex((v) => !Number.isInteger(v) || v < 0);
  if (bad >= 0)
    throw new Error(`--y '${path}' holds ${a.data[bad]} at index ${bad}; labels are class indices (integers >= 0)`);
  return Int32Array.from(a.data);
}

export async function runAutoAttack(a: AutoAttackArgs): Promise<void> {
  if (!NORMS.includes(a.norm as Norm)) throw new Error(`--norm must be one of ${NORMS.join(', ')}, got '${a.norm}'`);
  if (!VERSIONS.includes(a.version as Version))
    throw new Error(`--version must be one of ${VERSIONS.join(', ')}, got '${a.version}'`);
  const attacks = a.attacks?.split(',').map((s) => s.trim()) as AttackName[] | undefined;
  for (const n of attacks ?? []) {
    if (!ATTACK_NAMES.includes(n))
      throw new Error(`--attacks: unknown attack '${n}'; one of ${ATTACK_NAMES.join(', ')}`);
  }
  if (attacks && a.version !== 'custom')
    throw new Error(`--attacks goes with --version custom (got --version ${a.version})`);
  const verdict = parseVerdict(a.verdict);
  await initBackend(a.backend);
  const x = readImages(a.x);
  const y = readLabels(a.y, x.shape[0]);
  const net = await loadNetwork(a.kind, a.config, a.weights, a.backend);
  let score: Awaited<ReturnType<typeof loadNetwork>> | null = null;
  let model: AttackModel;
  const classify = (v: Tensor) => net.forward(v);
  if (a.score) {
    const g = a.score.gradient;
    if (g !== 'continuous' && g !== 'exact' && g !== 'bpda')
      throw new Error(`--gradient must be continuous, exact or bpda, got '${g}'`);
    if (a.score.kind !== 'ddpmpp' && a.score.kind !== 'adm' && a.score.kind !== 'ddpm')
      throw new Error(`--score-model must be ddpmpp, adm or ddpm (a score network), got '${a.score.kind}'`);
    if (a.score.kind === 'ddpm' && g === 'continuous')
      throw new Error('--score-model ddpm: the DDPM chain has no continuous adjoint; give --gradient exact or bpda');
    const s = await loadNetwork(a.score.kind, a.score.config, a.score.weights, a.backend);
    score = s;
    const ddpm =
      a.score.kind === 'ddpm'
        ? // DiffPure's CelebA-HQ path: t = 1000 t* ancestral DDPM steps
          ddpmPurifier({
            model: (v, t) => s.forward(v, t),
            t: Math.round(a.score.tStar * 1000),
            gradient: g === 'bpda' ? 'bpda' : 'exact',
          })
        : null;
    model = {
      backend: a.backend,
      classify: ddpm
        ? (v, keys) => tidy(() => classify(ddpm(v, keys)))
        : defendedClassifier({
            model: (v, t) => s.forward(v, t),
            scoreType: a.score.kind === 'adm' ? 'guided_diffusion' : 'score_sde',
            tStar: a.score.tStar,
            dt: a.score.dt,
            gradient: g as GradientMode,
            classifier: classify,
          }),
    };
  } else {
    model = { backend: a.backend, classify: (v) => classify(v) };
  }
  const settings: Partial<StageSettings> = {};
  if (a.eotIter !== undefined) settings.apgdEot = a.eotIter;
  if (a.nIter !== undefined) {
    settings.apgdIter = a.nIter;
    settings.fabIter = a.nIter;
  }
  const t0 = performance.now();
  const res = await autoAttack(model, x, y, {
    norm: a.norm as Norm,
    eps: a.eps,
    version: a.version as Version,
    attacks,
    settings,
    seed: a.seed,
    bs: a.bs,
    verdict,
    log: a.json ? (line) => process.stderr.write(`${line}\n`) : (line) => console.log(line),
  });
  if (a.out) writeNpy(a.out, res.adv.data, res.adv.shape);
  if (a.json) {
    console.log(
      JSON.stringify({
        version: a.version,
        norm: a.norm,
        eps: a.eps,
        seed: a.seed,
        verdict: res.verdict,
        defense: a.score
          ? { tStar: a.score.tStar, dt: a.score.dt, gradient: a.score.gradient, scoreModel: a.score.kind }
          : null,
        images: x.shape[0],
        accuracy: res.accuracy,
        robust: res.robust,
        warnings: res.warnings,
        seconds: (performance.now() - t0) / 1000,
        out: a.out ?? null,
      }),
    );
  }
  net.module.dispose();
  score?.module.dispose();
}
