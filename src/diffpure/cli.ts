// The `diffpure` command line: one binary, subcommands, --help on each, --json for machines.

import { parseArgs } from 'node:util';
import { getBackend, initBackend, registeredBackends } from '../tensor/index.js';
import { fitSineDemo } from './demo.js';

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(values: Record<string, string | boolean | undefined>): Promise<void>;
}

const commands: Record<string, Command> = {
  info: {
    summary: 'backends available here, and the GPU adapter with its limits and features',
    usage: 'diffpure info [--json]',
    options: { json: { type: 'boolean' } },
    async run(v) {
      const report: Record<string, unknown> = { node: process.version, backends: {} as Record<string, unknown> };
      const backends = report.backends as Record<string, unknown>;
      for (const name of registeredBackends()) {
        try {
          const b = await initBackend(name);
          const describe = (b as { describe?: () => unknown }).describe;
          backends[name] = { available: true, dtypes: b.dtypes, ...(describe ? { device: describe.call(b) } : {}) };
        } catch (e) {
          backends[name] = { available: false, reason: e instanceof Error ? e.message : String(e) };
        }
      }
      if (v.json) {
        console.log(JSON.stringify(report, null, 2));
        return;
      }
      console.log(`diffpure-ts on Node ${process.version}`);
      for (const [name, info] of Object.entries(backends)) {
        const i = info as { available: boolean; dtypes?: string[]; reason?: string; device?: unknown };
        console.log(`  ${name}: ${i.available ? `available (${i.dtypes?.join(', ')})` : `unavailable: ${i.reason}`}`);
        if (i.device) console.log(indent(JSON.stringify(i.device, null, 2), 4));
      }
    },
  },
  demo: {
    summary: 'fit y = sin(3x) with a small MLP by Adam, using the library autograd',
    usage: 'diffpure demo [--steps 500] [--seed 0] [--lr 0.01] [--backend cpu|webgpu] [--json]',
    options: {
      steps: { type: 'string', default: '500' },
      seed: { type: 'string', default: '0' },
      lr: { type: 'string', default: '0.01' },
      backend: { type: 'string', default: 'cpu' },
      json: { type: 'boolean' },
    },
    async run(v) {
      const steps = positiveInt('--steps', v.steps as string);
      const seed = positiveInt('--seed', v.seed as string, true);
      const lr = Number(v.lr);
      if (!(lr > 0)) throw new Error(`--lr must be a positive number, got '${v.lr}'`);
      const backend = v.backend as string;
      await initBackend(backend);
      const res = await fitSineDemo({
        steps,
        seed,
        lr,
        backend: getBackend(backend).name,
        every: Math.max(1, Math.floor(steps / 10)),
        onProgress: v.json
          ? undefined
          : (s, l) => console.log(`step ${String(s).padStart(5)}  loss ${l.toExponential(4)}`),
      });
      if (v.json) console.log(JSON.stringify({ backend, seed, lr, ...res }));
      else
        console.log(
          `fit ${steps} steps in ${res.seconds.toFixed(2)} s on ${backend}: loss ${res.initialLoss.toExponential(3)} -> ${res.finalLoss.toExponential(3)}`,
        );
    },
  },
};

function indent(s: string, n: number): string {
  return s
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');
}

function positiveInt(name: string, s: string, allowZero = false): number {
  const v = Number(s);
  if (!Number.isSafeInteger(v) || v < (allowZero ? 0 : 1)) {
    throw new Error(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got '${s}'`);
  }
  return v;
}

function help(): string {
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(8)} ${c.summary}`);
  return `usage: diffpure <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'diffpure <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`diffpure: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(`usage: ${cmd.usage}\n\n${cmd.summary}`);
    return 0;
  }
  try {
    const { values } = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: false });
    await cmd.run(values as Record<string, string | boolean | undefined>);
    return 0;
  } catch (e) {
    console.error(`diffpure ${name}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
