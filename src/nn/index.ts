export { constantInit, manualSeed, nextRandom, uniformInit } from './init.js';
export * from './layers/basic.js';
export { type HostTensor, type LoadResult, Module, Parameter } from './module.js';
