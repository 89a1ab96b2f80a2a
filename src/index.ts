// diffpure-ts public entry.

export * from './adjoint/index.js';
export * from './autograd/index.js';
export * as attacks from './diffpure/attacks/index.js';
export * as ddpm from './diffpure/ddpm-purify.js';
export * as defense from './diffpure/defense.js';
export * as diffpure from './diffpure/purify.js';
export * as nn from './nn/index.js';
export * as sde from './sde/index.js';
export * from './tensor/index.js';
export * from './wgsl/index.js';
