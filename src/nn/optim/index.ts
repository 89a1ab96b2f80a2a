export { Adam, type AdamOptions } from './adam.js';
export { clipGradNorm } from './clip.js';
export { Ema } from './ema.js';
export { lrAt, type Schedule } from './schedule.js';
export { SGD, type SgdOptions } from './sgd.js';
