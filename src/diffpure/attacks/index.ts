// Adversarial attacks on (possibly stochastic) classifiers, replaying the official implementations; see
// attacks.md in ../shared/docs for the quirks they keep.

export {
  type ApgdOptions,
  type ApgdTargetedOptions,
  type ApgdTrace,
  apgd,
  apgdCheckpoints,
  apgdTargeted,
  StepSizeRule,
} from './apgd.js';
export {
  ATTACK_NAMES,
  type AttackName,
  type AutoAttackOptions,
  type AutoAttackResult,
  autoAttack,
  type StageSettings,
  VERSIONS,
  type Version,
  versionPlan,
} from './autoattack.js';
export {
  type BpdaEotOptions,
  type BpdaEotResult,
  type BpdaEotTrace,
  type BpdaGradient,
  bpdaEot,
  bpdaUpdate,
  type PurifiedClassifier,
  type Purifier,
} from './bpda-eot.js';
export { eotGradient, MAX_EOT_ROWS } from './eot.js';
export { fab, fabTargeted } from './fab.js';
export { crossEntropyLoss, dlrLoss, dlrTargetedLoss, margins } from './losses.js';
export {
  type AttackModel,
  type AttackResult,
  asModel,
  type Classifier,
  type Images,
  logitsAndGrad,
  logitsOf,
  type NoiseKeys,
  predictions,
} from './model.js';
export { type PgdEotOptions, type PgdEotResult, type PgdEotTrace, pgdEot, pgdEotProject } from './pgd-eot.js';
export { checkAttackInputs, NORMS, type Norm } from './projections.js';
export { type AttackRandom, type DrawPurpose, KeyedRandom, mixKey, ReplayRandom } from './random.js';
export { square } from './square.js';
export {
  flowNorm,
  identityGrid,
  projectGrid,
  type StadvOptions,
  type StadvResult,
  type StadvTrace,
  sampleGrid,
  stadv,
} from './stadv.js';
export { correctUnder, describeVerdict, parseVerdict, SINGLE_PASS, type Verdict } from './verdicts.js';
