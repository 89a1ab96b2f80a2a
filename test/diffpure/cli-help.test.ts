// Every command answers --help with its usage, in lines a terminal shows whole (the train command's options were
// once one 2,000-character line).

import { describe, expect, test, vi } from 'vitest';
import { main } from '../../src/diffpure/cli.js';

const COMMANDS = ['info', 'convert', 'forward', 'purify', 'train', 'autoattack', 'eval', 'merge', 'demo'];

async function helpOf(argv: string[]): Promise<{ rc: number; text: string }> {
  const out: string[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    out.push(a.join(' '));
  });
  try {
    return { rc: await main(argv), text: out.join('\n') };
  } finally {
    spy.mockRestore();
  }
}

const longLines = (text: string) => text.split('\n').filter((l) => l.length > 120);

describe('diffpure --help', () => {
  test('the command list names every command, one line each', async () => {
    const { rc, text } = await helpOf(['--help']);
    expect(rc).toBe(0);
    for (const c of COMMANDS) expect(text).toMatch(new RegExp(`^  ${c} +\\S`, 'm'));
    expect(longLines(text), "lines over 120 characters in 'diffpure --help'").toEqual([]);
  });

  test.each(COMMANDS)('%s --help: its usage, exit 0, no line over 120 characters', async (c) => {
    const { rc, text } = await helpOf([c, '--help']);
    expect(rc).toBe(0);
    expect(text.startsWith(`usage: diffpure ${c}`)).toBe(true);
    expect(longLines(text), `lines over 120 characters in 'diffpure ${c} --help'`).toEqual([]);
  });
});
