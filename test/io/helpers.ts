// Shared helpers for the weight-IO tests.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

export const FIXTURES = new URL('../../../shared/fixtures/', import.meta.url).pathname;
export const DATA = new URL('./data/', import.meta.url).pathname;

export function readJson<T = Record<string, unknown>>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The float64 sum of a typed array, in order. */
export function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] as number;
  return s;
}

/** Elementwise equality of two array-likes (fast for large typed arrays, unlike toEqual). */
export function expectSameData(got: ArrayLike<number>, want: ArrayLike<number>, what = ''): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) expect(got[i], `${what} [${i}]`).toBe(want[i]);
  }
}

/**
 * Run one fuzz case: it must return or throw an Error whose message starts with one of the
 * readers' prefixes (a clear, attributed error), and finish within `ms` milliseconds.
 */
export function expectCleanOutcome(f: () => unknown, prefixes: readonly string[], ms = 2000): 'ok' | 'error' {
  const t0 = performance.now();
  let outcome: 'ok' | 'error' = 'ok';
  try {
    f();
  } catch (e) {
    outcome = 'error';
    expect(e).toBeInstanceOf(Error);
    const msg = (e as Error).message;
    if (!prefixes.some((p) => msg.startsWith(p))) throw new Error(`unattributed error: ${msg}`, { cause: e });
  }
  const dt = performance.now() - t0;
  expect(dt, 'a single fuzz case took too long').toBeLessThan(ms);
  return outcome;
}

export { type Mutation, mutate } from './mutate.js';
