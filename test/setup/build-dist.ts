// vitest globalSetup: build the wasm kernels (if their source changed) and dist/ once, before any test file runs.
// Several test files spawn bin/diffpure.mjs, which rebuilds dist/ when src/ is newer; without this, two of them
// starting together could both rebuild it and one import a half-written bundle.

export default async function setup(): Promise<void> {
  // @ts-expect-error: plain .mjs build scripts without type declarations
  const { buildWasmIfStale } = await import('../../scripts/build-wasm.mjs');
  // @ts-expect-error: as above
  const { build } = await import('../../scripts/build.mjs');
  buildWasmIfStale({ quiet: true });
  await build({ quiet: true });
}
