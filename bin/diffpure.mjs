#!/usr/bin/env node
// Launcher: (re)build dist/cli.mjs when it is missing or older than any file under src/, then run it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'cli.mjs');

function newestMtime(dir) {
  let newest = 0;
  if (!existsSync(dir)) return newest;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

const srcDir = join(root, 'src');
if (existsSync(srcDir) && (!existsSync(cli) || statSync(cli).mtimeMs < newestMtime(srcDir))) {
  const { build } = await import(pathToFileURL(join(root, 'scripts', 'build.mjs')).href);
  await build({ quiet: true });
}
if (!existsSync(cli)) {
  console.error('diffpure: dist/cli.mjs not found and could not be built (is src/diffpure/bin.ts present?)');
  process.exit(1);
}
await import(pathToFileURL(cli).href);
