// The thread count changes the speed, never the numbers: whole forward passes (prefill and
// decode) give bit-identical logits on one thread and on two, on stories260K and on a real model.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { loadModel } from '../src/model/load.js';
import { createWasmKernels } from '../src/kernels/wasm/index.js';
import { Pool } from '../src/kernels/wasm/pool.js';
import { catalogModel, sharedPath } from './helpers.js';

function logitsOf(path: string, threads: number, tokens: number[]): Float32Array[] {
  const kernels = createWasmKernels({ threads });
  try {
    const model = loadModel(path, { kernels });
    const f = model.createForward(8);
    const kv = model.createCache(64);
    const out: Float32Array[] = [];
    // a prefill of 11 tokens (two batches, a ragged four-token group), then 5 decode steps
    out.push(new Float32Array(f.run(kv, tokens.slice(0, 11), 0, 'all')!));
    for (let i = 11; i < 16; i++) out.push(new Float32Array(f.run(kv, [tokens[i]!], i, 'last')!));
    return out;
  } finally {
    kernels.close();
  }
}

const cases: Array<[string, string]> = [
  ['stories260K Q4_0', sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q4_0.gguf')],
  ['stories260K Q8_0', sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf')],
  ['smollm2-135m-instruct', catalogModel('smollm2-135m-instruct')],
];

for (const [name, path] of cases) {
  test(`${name}: one thread and two give bit-identical logits (prefill and decode)`, { skip: existsSync(path) ? false : `${path} missing` }, () => {
    const tokens = Array.from({ length: 16 }, (_, i) => 1 + ((i * 37 + 11) % 300));
    const one = logitsOf(path, 1, tokens);
    const two = logitsOf(path, 2, tokens);
    assert.equal(two.length, one.length);
    for (let s = 0; s < one.length; s++) {
      const a = one[s]!, b = two[s]!;
      assert.equal(a.length, b.length);
      for (let i = 0; i < a.length; i++) {
        if (!Object.is(a[i], b[i])) assert.fail(`step ${s} logit ${i}: 1 thread ${a[i]}, 2 threads ${b[i]}`);
      }
    }
  });
}

test('a worker that dies before serving makes the dispatch throw with its message, not hang', () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 16, shared: true });
  let host = 0;
  // not a module: the worker's instantiation throws before it can serve
  const pool = new Pool({}, memory, 2, 0, false, 0, () => { host++; return 0; });
  assert.throws(() => pool.run(0, 0), (e: Error) => /^kernel thread pool: a worker failed: thread 1: .*Module/.test(e.message) && !e.message.includes('\n'));
  assert.equal(host, 1);
  assert.throws(() => pool.run(0, 0), /used after close/);
});
