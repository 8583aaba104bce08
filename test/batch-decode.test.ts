// Batched decoding across sequences: one runBatch over rows of different sequences (each with its
// own cache and position) gives the logits each sequence gets when run alone: to float rounding
// with f32 activations (measured ≤ 1e-5 of the largest logit), and identically with 8-bit ones
// (each row is quantized on its own; the integer dot products are exact).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type Model } from '../src/model/load.js';
import { createWasmKernels } from '../src/kernels/wasm/index.js';
import type { KVCache } from '../src/model/kv-cache.js';
import { catalogModel, sharedPath } from './helpers.js';

const prompts = [
  [1, 45, 67, 89, 120, 33],
  [1, 400, 12, 13, 14, 15, 16, 17, 18, 200],
  [1, 7, 8],
];

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Logits of each prompt's last token, each sequence alone (prefill all but the last, then one decode step). */
function alone(model: Model): Float32Array[] {
  return prompts.map((p) => {
    const f = model.createForward(8);
    const kv = model.createCache(32);
    f.run(kv, p.slice(0, -1), 0, 'none');
    return new Float32Array(f.run(kv, [p.at(-1)!], p.length - 1, 'last')!);
  });
}

function batched(model: Model): { logits: Float32Array[]; caches: KVCache[] } {
  const f = model.createForward(8);
  const caches = prompts.map((p) => {
    const kv = model.createCache(32);
    f.run(kv, p.slice(0, -1), 0, 'none');
    return kv;
  });
  const out = f.runBatch(prompts.map((p, i) => ({ kv: caches[i]!, token: p.at(-1)!, pos: p.length - 1 })));
  const V = model.config.vocabSize;
  assert.equal(out.length, prompts.length * V);
  return { logits: prompts.map((_, i) => new Float32Array(out.subarray(i * V, (i + 1) * V))), caches };
}

for (const [name, path, activations, tol] of [
  ['stories260K F32, f32 activations', sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf'), 'f32', 2e-6],
  ['stories260K Q8_0, Q8 activations', sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), 'q8', 1e-6],
  ['smollm2-135m-instruct, f32 activations', catalogModel('smollm2-135m-instruct'), 'f32', 2e-5],
  ['smollm2-135m-instruct, Q8 activations', catalogModel('smollm2-135m-instruct'), 'q8', 1e-6],
] as const) {
  test(`runBatch: three sequences at different positions = each alone (${name})`, () => {
    const kernels = createWasmKernels({ activations, threads: 1 });
    try {
      const model = loadModel(path, { kernels });
      const a = alone(model);
      const b = batched(model);
      for (let i = 0; i < prompts.length; i++) {
        // relative to the largest logit: the batch goes through matmul, a lone decode row through
        // matvec, which sum in different orders
        const scale = Math.max(1, ...Array.from(a[i]!, Math.abs));
        const d = maxDiff(a[i]!, b.logits[i]!) / scale;
        assert.ok(d <= tol, `sequence ${i}: max |Δlogit| / max |logit| = ${d} > ${tol}`);
      }
      // every cache grew by exactly its own row
      b.caches.forEach((kv, i) => assert.equal(kv.length, prompts[i]!.length));
    } finally {
      kernels.close();
    }
  });
}

test('runBatch: a prompt chunk of one sequence beside a decode row of another; rows without logits', () => {
  const kernels = createWasmKernels({ activations: 'f32', threads: 1 });
  try {
    const model = loadModel(sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf'), { kernels });
    const ref = alone(model);
    const f = model.createForward(16);
    const kvA = model.createCache(32);
    const kvB = model.createCache(32);
    const [pa, pb] = [prompts[0]!, prompts[1]!];
    f.run(kvA, pa.slice(0, -1), 0, 'none');
    // B's whole prompt in the same pass as A's decode row; logits only for the last row of each
    const items = [
      ...pb.map((token, pos) => ({ kv: kvB, token, pos, logits: pos === pb.length - 1 })),
      { kv: kvA, token: pa.at(-1)!, pos: pa.length - 1 },
    ];
    const out = f.runBatch(items);
    const V = model.config.vocabSize;
    assert.equal(out.length, 2 * V);
    assert.ok(maxDiff(out.subarray(0, V), ref[1]!) <= 1e-5, 'B (prompt chunk)');
    assert.ok(maxDiff(out.subarray(V, 2 * V), ref[0]!) <= 1e-5, 'A (decode row)');
    assert.equal(kvB.length, pb.length);
  } finally {
    kernels.close();
  }
});
