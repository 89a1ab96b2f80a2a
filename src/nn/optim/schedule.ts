// Learning-rate schedules as pure functions of the step (0-based: the rate for the step about to be taken), so a
// resumed run needs only the step count. Names and formulas follow PyTorch's schedulers and score_sde:
// - warmup: score_sde's optimization_manager, lr * min(step / warmup, 1) (step counted from 1 there; pass step + 1);
// - cosine: CosineAnnealingLR's closed form, minLr + (lr - minLr) * (1 + cos(pi * t / total)) / 2 after the warm-up;
// - step: StepLR, lr * gamma^floor(t / stepSize).

export type Schedule =
  | { kind: 'constant'; warmup?: number }
  | { kind: 'cosine'; total: number; minLr?: number; warmup?: number }
  | { kind: 'step'; stepSize: number; gamma: number; warmup?: number };

/** The learning rate at `step` (0-based) for base rate `lr`. */
export function lrAt(lr: number, step: number, s: Schedule): number {
  if (!Number.isInteger(step) || step < 0) throw new Error(`lrAt: step must be a non-negative integer, got ${step}`);
  const warmup = s.warmup ?? 0;
  // score_sde: lr * min(step / warmup, 1) with its 1-based step
  const w = warmup > 0 ? Math.min((step + 1) / warmup, 1) : 1;
  const t = Math.max(0, step - warmup);
  switch (s.kind) {
    case 'constant':
      return lr * w;
    case 'cosine': {
      if (!(s.total > 0)) throw new Error(`cosine schedule: total must be > 0, got ${s.total}`);
      const minLr = s.minLr ?? 0;
      const f = Math.min(t, s.total) / s.total;
      return w * (minLr + ((lr - minLr) * (1 + Math.cos(Math.PI * f))) / 2);
    }
    case 'step':
      if (!(s.stepSize > 0)) throw new Error(`step schedule: stepSize must be > 0, got ${s.stepSize}`);
      return w * lr * s.gamma ** Math.floor(t / s.stepSize);
  }
}
