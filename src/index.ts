// diffpure-ts public entry.

export * from './autograd/index.js';
export * from './tensor/index.js';
export * as nn from './nn/index.js';
