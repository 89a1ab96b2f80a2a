// Progress of an evaluation on stderr: a bar redrawn in place on a TTY, plain lines (at most one per 10 s, and one
// per finished unit) when stderr is a file or a pipe, as in a Slurm log.

import type { ProgressEvent } from './runner.js';

function clock(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** One line describing where the run stands. */
export function progressLine(e: ProgressEvent, elapsed: number): string {
  const parts = [`${e.imagesDone}/${e.imagesTotal} images`, `${e.unitsDone}/${e.unitsTotal} batches`];
  if (e.robust !== undefined) parts.push(`robust ${e.robust.toFixed(1)}% so far`);
  if (e.secondsPerImage !== undefined) {
    parts.push(`${e.secondsPerImage.toFixed(2)} s/image`);
    parts.push(`ETA ${clock((e.imagesTotal - e.imagesDone) * e.secondsPerImage)}`);
  }
  parts.push(`elapsed ${clock(elapsed)}`);
  if (e.unit)
    parts.push(`now ${e.unit.attack} on ${e.unit.target}, seed ${e.unit.seed}, batch ${e.unit.chunk}: ${e.phase}`);
  return parts.join(' · ');
}

export function progressReporter(
  stream: NodeJS.WriteStream = process.stderr,
  prefix = 'eval',
): { update: (e: ProgressEvent) => void; done: () => void } {
  const t0 = performance.now();
  const tty = stream.isTTY === true;
  let last = 0;
  let lastDone = -1;
  let drawn = false;
  return {
    update(e) {
      const now = performance.now();
      const finished = e.unitsDone !== lastDone;
      if (!finished && now - last < (tty ? 250 : 10_000)) return;
      last = now;
      lastDone = e.unitsDone;
      const line = `${prefix}: ${progressLine(e, (now - t0) / 1000)}`;
      if (tty) {
        const width = Math.max(10, Math.min(30, (stream.columns ?? 80) - 20));
        const filled = e.imagesTotal ? Math.round((width * e.imagesDone) / e.imagesTotal) : width;
        const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
        const text = `${bar} ${line}`.slice(0, (stream.columns ?? 120) - 1);
        stream.write(`\r\x1b[K${text}`);
        drawn = true;
      } else stream.write(`${line}\n`);
    },
    done() {
      if (drawn) stream.write('\n');
    },
  };
}
