// Property tests draw from one fixed seed unless FC_SEED says otherwise, so a run of the suite
// (and CI, which gates landing) is reproducible. FC_SEED=<integer> replays a reported seed;
// FC_SEED=random draws a fresh one per run, to explore beyond the fixed sample.
// fast-check prints the seed and path of any counterexample either way.

import fc from 'fast-check';

const DEFAULT_SEED = 20220517;
const env = process.env.FC_SEED;

if (env !== 'random') {
  const seed = env === undefined || env === '' ? DEFAULT_SEED : Number(env);
  if (!Number.isInteger(seed)) {
    throw new Error(`FC_SEED=${JSON.stringify(env)}: expected an integer seed or 'random'`);
  }
  fc.configureGlobal({ seed });
}
