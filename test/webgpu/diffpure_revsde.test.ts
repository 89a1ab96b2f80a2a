// ../shared/fixtures/diffpure_revsde (dt 0.01) end to end through purify() on webgpu: the same
// checks as the cpu test (test/diffpure/fixture_diffpure_revsde.test.ts, whose setup is shared
// through test/diffpure/revsde-helpers.ts): DiffPure's reverse VP-SDE purification around the tiny
// DDPM++ of the ddpmpp fixture (EMA weights) loaded onto webgpu, with the inputs, the stored
// forward noise and the stored Brownian increments (BrownianReplay) all on 'webgpu' (the current
// backend stays cpu, so anything created elsewhere fails loudly). Tolerance 1e-4 max|ref|:
//   mode 'exact'      purified and dL/dx_in vs grad_x_in_autograd,
//   mode 'continuous' purified and dL/dx_in vs grad_x_in_adjoint_default.
// Each test checks the bytes in use return to where they were, and settle()s before its solve.

import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  checker,
  loadRevsdeCase,
  purifyWithGrad,
  REVSDE_BASE,
  REVSDE_DDPMPP,
  type RevsdeCase,
  refRows,
  yieldToLoop,
} from '../diffpure/revsde-helpers.js';
import { expectNoLeak, settle } from './helpers.js';
import { backend, gpu } from './setup.js';

const TIMEOUT = 600_000;
const label = 'webgpu diffpure_revsde';

describe.skipIf(!gpu || !REVSDE_BASE || !REVSDE_DDPMPP)(
  'fixture diffpure_revsde: purify() around DDPM++ on webgpu (tolerance 1e-4 max|ref|)',
  () => {
    const d = REVSDE_BASE as string;
    const report: Record<string, number> = {};
    const check = checker(report);
    let c: RevsdeCase;
    let bytesBefore = 0;

    beforeAll(async () => {
      bytesBefore = backend().stats().bytesInUse;
      c = await loadRevsdeCase(d, 0.01, { backend: 'webgpu' });
      for (const [name, p] of c.net.module.namedParameters()) expect(p.backend.name, name).toBe('webgpu');
      for (const t of [c.xIn, c.w, c.opts.noise]) expect(t?.backend.name).toBe('webgpu');
    });

    afterAll(async () => {
      console.log(`${label} via purify, max|ours - ref| / max|ref|:`, JSON.stringify(report));
      c?.dispose();
      await settle();
      expect(backend().stats().bytesInUse, 'network and inputs freed').toBe(bytesBefore);
    });

    let firstPurified: Float64Array | null = null;
    const samePurified = (p: Float64Array) => {
      if (firstPurified) expect(Array.from(p), 'purified is the same in both modes').toEqual(Array.from(firstPurified));
      firstPurified = p;
    };

    for (const [mode, gradRef] of [
      ['exact', 'grad_x_in_autograd'],
      ['continuous', 'grad_x_in_adjoint_default'],
    ] as const) {
      test(
        `mode '${mode}': purified and dL/dx_in vs ${gradRef}`,
        async () => {
          await settle();
          await yieldToLoop();
          const { purified, grad } = await expectNoLeak(mode, () => purifyWithGrad(c, label, mode));
          check(mode === 'exact' ? 'purified' : `purified (${mode} run)`, purified, refRows(d, 'purified.npy'));
          check(gradRef, grad, refRows(d, `${gradRef}.npy`));
          samePurified(purified);
        },
        TIMEOUT,
      );
    }
  },
);
