// Gradients through SDE solves: the continuous (stochastic) adjoint and the exact discrete one.

export { type AdjointMode, type AdjointOptions, type AdjointTraceEvent, sdeintAdjoint } from './adjoint.js';
