// Perplexity the llama.cpp way, against llama.cpp's own figure (DATA.md) for stories260K F32:
// tinystories_val_prefix.txt, context 128, all chunks → 4.9693.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { perplexity } from '../src/eval/perplexity.js';
import { loadModel } from '../src/model/load.js';
import { sharedPath } from './helpers.js';

test('stories260K F32: perplexity over all chunks of 128 matches llama.cpp (4.9693)', () => {
  const model = loadModel(sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf'));
  const text = readFileSync(sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt'), 'utf8');
  const r = perplexity(model, text, { ctx: 128 });
  assert.equal(r.chunks, 3070);
  assert.equal(r.scored, 3070 * 63);
  // llama.cpp prints four decimals: agree to within its rounding
  assert.ok(Math.abs(r.ppl - 4.9693) <= 5e-5, `ppl ${r.ppl}`);
});
