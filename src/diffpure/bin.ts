// Entry point of the `diffpure` binary (bundled to dist/cli.mjs by scripts/build.mjs).

import { main } from './cli.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
