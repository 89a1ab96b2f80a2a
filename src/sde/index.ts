// The SDE layer: SDE definitions, Brownian motion, integrators, sdeint, DiffPure's VP-SDE.

export {
  BrownianGrid,
  type BrownianGridOptions,
  type BrownianMotion,
  BrownianReplay,
  type BrownianReplayOptions,
  brownianShape,
} from './brownian.js';
export { METHODS, type Method, strongOrder } from './methods.js';
export { defaultBrownian, type SdeintOptions, type StepEvent, sdeint, type Times } from './sdeint.js';
export { adjointSteps, f32, type SolvePlan, solvePlan, stepGrid } from './time.js';
export { defineSde, type NoiseType, type SDE, type SdeSpec, type SdeType } from './types.js';
export {
  noiseLevel,
  RevVPSDE,
  type RevVPSDEOptions,
  type ScoreModel,
  type ScoreType,
  VP_BETA_MAX,
  VP_BETA_MIN,
  VP_N,
  vpAlphaBar,
  vpBeta,
  vpDiffuse,
  vpDiscreteAlphaBars,
  vpMarginalStd,
  vpReverseTimes,
  vpScoreTerms,
} from './vpsde.js';
