// Solver time grids with torchsde's float32 arithmetic.
//
// torchsde keeps time in the dtype of `ts` (float32 in DiffPure: torch.linspace) and steps with
//   t_(k+1) = min(t_k + dt, ts[-1])            (base_solver.integrate, fixed steps)
// where `t_k + dt` is a float32 tensor plus a Python float, i.e. f32(t_k + f32(dt)). An output time
// ts[j] strictly inside the last step taken is reached by linear interpolation between the two
// bracketing states (torchsde/_core/interp.py), not by shortening the step: only the final time
// ts[-1] is landed on exactly, because the grid is capped there. Both rules are reproduced here
// (checked against the fixtures' time_grid.npy and adjoint_pass_step_times.npy).

/** Round to the nearest float32, as every torch float32 scalar op does. */
export const f32 = Math.fround;

/** Checked, float32-rounded, strictly increasing output times. */
export function checkTimes(op: string, ts: ArrayLike<number>): number[] {
  const out = Array.from(ts, (t) => f32(t));
  if (out.length < 2) throw new Error(`${op}: ts needs at least 2 times, got ${out.length}`);
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i] as number)) throw new Error(`${op}: ts[${i}] = ${ts[i]} is not finite`);
    if (i > 0 && !((out[i] as number) > (out[i - 1] as number))) {
      throw new Error(
        `${op}: ts must be strictly increasing in float32; ts[${i - 1}] = ${out[i - 1]}, ts[${i}] = ${out[i]}`,
      );
    }
  }
  return out;
}

export function checkDt(op: string, dt: number): number {
  if (!(typeof dt === 'number' && dt > 0 && Number.isFinite(dt))) {
    throw new Error(`${op}: dt must be a positive finite number, got ${dt}`);
  }
  if (!(f32(dt) > 0)) throw new Error(`${op}: dt = ${dt} underflows in float32`);
  return dt;
}

/** The step times from t0 to t1: t_(k+1) = min(f32(t_k + f32(dt)), t1), ending exactly at t1. */
export function stepGrid(t0: number, t1: number, dt: number): number[] {
  const a = f32(t0);
  const b = f32(t1);
  const h = f32(dt);
  if (!(b > a)) throw new Error(`stepGrid: need t0 < t1 in float32, got ${a} and ${b}`);
  const grid = [a];
  let t = a;
  while (t < b) {
    const next = Math.min(f32(t + h), b);
    if (!(next > t)) throw new Error(`stepGrid: dt = ${dt} is below float32 resolution at t = ${t}`);
    grid.push(next);
    t = next;
  }
  return grid;
}

/**
 * One output of a solve as a combination of step states: y = wPrev * y_(k-1) + wCurr * y_k
 * (k = 0: the initial state itself). wPrev = 0, wCurr = 1 when ts[j] falls on a step time.
 */
export interface OutputWeight {
  readonly k: number;
  readonly wPrev: number;
  readonly wCurr: number;
}

export interface SolvePlan {
  /** Step times t_0 = ts[0] < ... < t_K = ts[-1]. */
  readonly times: readonly number[];
  /** For each entry of ts, how it is read off the steps. */
  readonly outputs: readonly OutputWeight[];
}

/**
 * The fixed-step schedule of torchsde's integrate loop: steps of dt from ts[0] capped at ts[-1],
 * outputs at intermediate ts by linear interpolation (weights in float32, as torch computes them).
 */
export function solvePlan(ts: readonly number[], dt: number): SolvePlan {
  const last = ts[ts.length - 1] as number;
  const h = f32(dt);
  const times = [ts[0] as number];
  const outputs: OutputWeight[] = [{ k: 0, wPrev: 0, wCurr: 1 }];
  let curr = ts[0] as number;
  let prev = curr;
  for (let j = 1; j < ts.length; j++) {
    const out = ts[j] as number;
    while (curr < out) {
      const next = Math.min(f32(curr + h), last);
      if (!(next > curr)) throw new Error(`sdeint: dt = ${dt} is below float32 resolution at t = ${curr}`);
      prev = curr;
      curr = next;
      times.push(curr);
    }
    const k = times.length - 1;
    if (out === curr) outputs.push({ k, wPrev: 0, wCurr: 1 });
    else {
      // interp.linear_interp: (t1 - t)/(t1 - t0) * y0 + (t - t0)/(t1 - t0) * y1
      const span = f32(curr - prev);
      outputs.push({ k, wPrev: f32(f32(curr - out) / span), wCurr: f32(f32(out - prev) / span) });
    }
  }
  return { times, outputs };
}

/**
 * The grid torchsde's adjoint pass steps on between two output times ta < tb: adjoint time
 * s = -t from -tb to -ta with s_(j+1) = min(f32(s_j + dt), -ta), returned as forward-time pairs
 * [tHi, tLo] = [-s_j, -s_(j+1)], latest first. It is not the forward grid mirrored: it starts at
 * tb, so its cells straddle the forward cells and its last (short) step ends on ta.
 */
export function adjointSteps(ta: number, tb: number, dt: number): [tHi: number, tLo: number][] {
  const s = stepGrid(-tb, -ta, dt);
  const out: [number, number][] = [];
  for (let j = 0; j + 1 < s.length; j++) out.push([-(s[j] as number), -(s[j + 1] as number)]);
  return out;
}
