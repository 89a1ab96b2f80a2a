export { customOp } from './custom.js';
export { backward, detach, grad, isGradEnabled, noGrad, valueAndGrad, vjp } from './engine.js';
