// diffpure-ts public entry.

export * from './autograd/index.js';
export * from './tensor/index.js';
