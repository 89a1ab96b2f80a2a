export { constantInit, manualSeed, nextRandom, uniformInit } from './init.js';
export * from './io/index.js';
export * from './layers/activation.js';
export * from './layers/basic.js';
export { buildShapeOnly, describeShapeOnly } from './meta.js';
export * as models from './models/index.js';
export { type HostWeights, type LoadResult, Module, Parameter } from './module.js';
export * as optim from './optim/index.js';
