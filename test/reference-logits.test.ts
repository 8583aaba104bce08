// The three real models against an independent float64 reference of their forward pass
// (scripts/make-reference-logits.py: numpy, written from the model definitions, weights
// dequantized by the `gguf` Python package). Unlike llama.cpp's golden runs, which quantize
// activations, the reference is exact up to f64 rounding, so our logits with exact (f32)
// activations must agree to 1e-3.
// CI checks the first golden case of each model (prompt + 8 teacher-forced tokens, 9 positions);
// CTXSPARSE_REFERENCE_ALL=1 checks every case.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Session } from '../src/generate/session.js';
import { loadModel } from '../src/model/load.js';
import { createWasmKernels } from '../src/kernels/wasm/index.js';
import { catalogModel, ROOT } from './helpers.js';

interface RefPosition {
  position: number;
  predicts: number | null;
  ref_top_ids: number[];
  ref_top_logits: number[];
  llamacpp_top_ids: number[];
  ref_logits_of_llamacpp_top: number[];
}
interface RefCase {
  case: number;
  prompt_ids: number[];
  forced_ids: number[];
  positions: RefPosition[];
}
interface RefFile {
  model: string;
  cases: RefCase[];
}

const TOLERANCE = 1e-3;
const ALL = process.env.CTXSPARSE_REFERENCE_ALL === '1';

function readReference(name: string): RefFile {
  return JSON.parse(readFileSync(join(ROOT, 'test', 'fixtures', 'reference-logits', `${name}.json`), 'utf8')) as RefFile;
}

interface Worst {
  diff: number;
  where: string;
}

/** Feeds prompt + forced tokens and compares the logits at the stored positions. */
function checkCase(session: Session, c: RefCase, worst: Worst): void {
  const n = c.positions.length;
  assert.equal(n, c.forced_ids.length + 1);
  let logits = session.prefill(c.prompt_ids);
  for (let j = 0; j < n; j++) {
    const p = c.positions[j]!;
    assert.equal(p.position, c.prompt_ids.length - 1 + j);
    const pairs: [number[], number[]] [] = [
      [p.ref_top_ids, p.ref_top_logits],
      [p.llamacpp_top_ids, p.ref_logits_of_llamacpp_top],
    ];
    for (const [ids, ref] of pairs) {
      ids.forEach((id, k) => {
        const d = Math.abs(logits[id]! - ref[k]!);
        if (!(d <= worst.diff)) {
          // (NaN lands here too and fails below)
          worst.diff = Number.isNaN(d) ? Infinity : d;
          worst.where = `case ${c.case}, position ${p.position}, id ${id}: ours ${logits[id]} vs reference ${ref[k]}`;
        }
      });
    }
    // our argmax must be the reference's unless the reference itself has a near tie
    const ours = argmax(logits);
    const [r0, r1] = p.ref_top_logits;
    if (r0! - r1! > 10 * TOLERANCE) assert.equal(ours, p.ref_top_ids[0], `case ${c.case} position ${p.position}: argmax`);
    if (j < c.forced_ids.length) logits = session.append([c.forced_ids[j]!]);
  }
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

for (const name of ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m']) {
  const ref = readReference(name);
  const cases = ALL ? ref.cases : ref.cases.slice(0, 1);
  test(`${name}: logits within ${TOLERANCE} of the f64 reference (${ALL ? 'all cases' : 'first case'}, 9 positions)`, () => {
    assert.equal(ref.model, name);
    // exact f32 activations (the default 8-bit activations are llama.cpp's approximation), 2 threads
    const kernels = createWasmKernels({ activations: 'f32', threads: 2 });
    const model = loadModel(catalogModel(name), { kernels });
    const worst: Worst = { diff: 0, where: '' };
    for (const c of cases) checkCase(new Session(model), c, worst);
    console.log(`${name}: max |ours - reference| ${worst.diff.toExponential(3)} (${worst.where})`);
    kernels.close();
    assert.ok(worst.diff <= TOLERANCE, `max |logit difference| ${worst.diff} > ${TOLERANCE} at ${worst.where}`);
  });
}
