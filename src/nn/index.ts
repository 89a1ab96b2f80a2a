export { constantInit, manualSeed, nextRandom, uniformInit } from './init.js';
export * from './layers/basic.js';
export * from './io/index.js';
export { type HostWeights, type LoadResult, Module, Parameter } from './module.js';
