// Shared test helpers: where the shared data and the pulled models live.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Project root (tests run from dist/test/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** ../shared beside the project. */
export const SHARED = resolve(ROOT, '..', 'shared');

export function sharedPath(...parts: string[]): string {
  return join(SHARED, ...parts);
}

export function modelsDir(): string {
  return process.env.CTXSPARSE_MODELS ?? join(homedir(), '.cache', 'ctxsparse', 'models');
}

/** Path of a pulled catalog model; tests that need one fail loudly if it is missing (CI pulls them). */
export function catalogModel(name: string): string {
  const p = join(modelsDir(), `${name}.gguf`);
  if (!existsSync(p)) throw new Error(`test needs model ${name}: run \`ctxsparse pull ${name}\` first (looked at ${p})`);
  return p;
}

/** A committed test fixture under test/fixtures. */
export function fixturePath(...parts: string[]): string {
  return join(ROOT, 'test', 'fixtures', ...parts);
}

/** A small seeded random generator for test inputs (uniform in [0, 1)). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
