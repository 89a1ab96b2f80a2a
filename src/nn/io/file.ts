// Reading whole files for the weight readers.

import { constants as bufferConstants } from 'node:buffer';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Read a whole file (also beyond the 2 GiB that readFileSync refuses) into one buffer. */
export function readWholeFile(path: string, who: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new Error(`${who}: cannot open '${path}': ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size > bufferConstants.MAX_LENGTH)
      throw new Error(`${who}: '${path}' is ${size} bytes, more than this runtime can hold in one buffer`);
    const out = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const got = readSync(fd, out, off, Math.min(size - off, 1 << 30), off);
      if (got === 0) throw new Error(`${who}: '${path}' shrank while being read`);
      off += got;
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new Error(msg.startsWith(`${who}:`) ? msg : `${who}: cannot read '${path}': ${msg}`);
  } finally {
    closeSync(fd);
  }
}
