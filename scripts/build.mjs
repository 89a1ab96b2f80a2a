// Bundle the CLI and the benchmarks with esbuild. Missing entry points are skipped with a warning.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Returns [entry, outfile] pairs relative to the repository root. */
export function entryPoints() {
  const entries = [['src/diffpure/bin.ts', 'dist/cli.mjs']];
  const benchDir = join(root, 'bench');
  if (existsSync(benchDir)) {
    for (const f of readdirSync(benchDir).sort()) {
      if (f.endsWith('.ts') && !f.endsWith('.d.ts')) entries.push([`bench/${f}`, `dist/bench-${f.slice(0, -3)}.mjs`]);
    }
  }
  return entries;
}

export async function build({ quiet = false } = {}) {
  const built = [];
  for (const [entry, outfile] of entryPoints()) {
    if (!existsSync(join(root, entry))) {
      console.warn(`build: skipping ${entry} (not found)`);
      continue;
    }
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: ['webgpu'],
      sourcemap: true,
      loader: { '.wgsl': 'text' },
      logLevel: quiet ? 'warning' : 'info',
      // Bundled CJS dependencies may call require(); give ESM output a real one.
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    });
    built.push(outfile);
  }
  return built;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  build().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
