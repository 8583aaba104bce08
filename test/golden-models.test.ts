// The three real models against llama.cpp's golden greedy runs. CI runs a slice (the first
// prompt of each, a few steps); `node scripts/check-golden.js` runs every prompt and step.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkGoldenCase, readGolden } from '../src/eval/golden.js';
import { loadModel } from '../src/model/load.js';
import { catalogModel, sharedPath } from './helpers.js';

const STEPS = Number(process.env.CTXSPARSE_GOLDEN_STEPS ?? 8);

for (const name of ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m']) {
  test(`${name}: greedy tokens and top-10 logits match llama.cpp (first prompt, ${STEPS} steps)`, () => {
    const model = loadModel(catalogModel(name));
    const golden = readGolden(sharedPath('golden', name, 'greedy.json'));
    const r = checkGoldenCase(model, golden.cases[0]!, { steps: STEPS });
    assert.ok(r.promptIdsMatch, r.failure);
    assert.ok(r.ok, `${r.failure} (max logit error ${r.maxLogitError})`);
  });
}
