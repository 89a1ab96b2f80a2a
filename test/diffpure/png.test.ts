// PNG output (src/diffpure/png.ts): an image grid's pixels land where they should (read back through pngjs), values
// outside [0, 1] are clipped for display only, and a loss curve draws inside its frame.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, test } from 'vitest';
import { imageGrid, lossCurve, writePng } from '../../src/diffpure/png.js';

const dir = mkdtempSync(join(tmpdir(), 'png-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('png', () => {
  test('a grid of two 2x2 gray images at scale 1, written and read back', () => {
    const images = Float32Array.from([0, 1, 0.5, 2, /* second */ -1, 0.25, 0.75, 1]);
    const g = imageGrid(images, [2, 1, 2, 2], 2, 1);
    expect([g.w, g.h]).toEqual([2 * (2 + 2) + 2, 2 + 2 + 2]);
    const path = join(dir, 'grid.png');
    writePng(path, g.rgba, g.w, g.h);
    const png = PNG.sync.read(readFileSync(path));
    const at = (x: number, y: number) => png.data[4 * (y * png.width + x)];
    expect([at(2, 2), at(3, 2), at(2, 3), at(3, 3)]).toEqual([0, 255, 128, 255]); // 2 is clipped to 255
    expect([at(6, 2), at(7, 2), at(6, 3), at(7, 3)]).toEqual([0, 64, 191, 255]); // -1 clipped to 0
    expect(at(0, 0)).toBe(128); // gutter
    expect(() => imageGrid(images, [1, 2, 2, 2], 1)).toThrow(/1 or 3 channels/);
  });

  test('a loss curve draws dark pixels inside its frame', () => {
    const c = lossCurve(Array.from({ length: 200 }, (_, i) => 2 * Math.exp(-i / 50) + 0.1));
    let dark = 0;
    for (let i = 0; i < c.w * c.h; i++) if ((c.rgba[4 * i] as number) < 100) dark++;
    expect(dark).toBeGreaterThan(500);
  });
});
