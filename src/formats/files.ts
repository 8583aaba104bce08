// Opening model files with one-line errors that name the path.
import { openSync } from 'node:fs';
import { CtxError } from '../errors.js';

export function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new CtxError(`${path}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
