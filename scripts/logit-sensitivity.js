#!/usr/bin/env node
// How far do the golden prompts' top-10 logits move when one op's output moves by float rounding?
// Runs every golden prompt twice with our default kernels, the second time with every attention
// output scaled by (1 + rel·sin(i)) (rel = 1e-6 by default: a few f32 ulps, the size of a
// different summation order), teacher-forced on llama.cpp's greedy ids for --steps steps, and
// prints the largest change of the golden top-10 logits. With 8-bit activations a tiny change
// flips some codes' rounding and the flips cascade through the layers: this is the floor under
// any comparison with llama.cpp's logits that is not bit-identical to its float order.
// Usage: node scripts/logit-sensitivity.js [model ...] [--rel 1e-6] [--steps 8] [--json]   (after `npm run build`)
import { parseArgs } from 'node:util';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGolden } from '../dist/src/eval/golden.js';
import { loadModel, defaultKernels } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { Session } from '../dist/src/generate/session.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rel: { type: 'string', default: '1e-6' }, steps: { type: 'string', default: '8' }, json: { type: 'boolean', default: false } },
});
const rel = Number(values.rel);
const steps = Number(values.steps);
const shared = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const models = positionals.length ? positionals : ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m'];

const rows = [];
for (const name of models) {
  // a decorator over the default kernels: attention as usual, then its output nudged when asked
  const base = defaultKernels({});
  const kernels = Object.create(base);
  let nudge = false;
  kernels.attentions = (list) => {
    base.attentions(list);
    if (!nudge) return;
    for (const a of list) {
      for (let i = a.outOffset; i < a.outOffset + a.nHeads * a.headDimV; i++) a.out[i] *= 1 + rel * Math.sin(i * 7.3 + a.n);
    }
  };
  kernels.attention = (a) => kernels.attentions([a]);
  const model = loadModel(resolveModel(name), { kernels });
  const golden = readGolden(join(shared, 'golden', name, 'greedy.json'));
  const run = (c) => {
    const s = new Session(model);
    let logits = s.prefill(c.prompt_ids);
    const out = [];
    for (let j = 0; j < Math.min(steps, c.greedy_ids.length); j++) {
      out.push(c.top_logits[j].ids.map((id) => logits[id]));
      if (j + 1 < steps) logits = s.append([c.greedy_ids[j]]);
    }
    return out;
  };
  for (const [i, c] of golden.cases.entries()) {
    nudge = false;
    const a = run(c);
    nudge = true;
    const b = run(c);
    const first = Math.max(...a[0].map((v, k) => Math.abs(v - b[0][k])));
    const all = Math.max(...a.flatMap((r, j) => r.map((v, k) => Math.abs(v - b[j][k]))));
    rows.push({ model: name, case: i, first_step: +first.toPrecision(3), max: +all.toPrecision(3), steps: a.length });
    if (!values.json) console.log(`${name} #${i}: top-10 logits move by up to ${first.toPrecision(3)} at the first step, ${all.toPrecision(3)} over ${a.length} steps (attention outputs × (1 ± ${rel}))`);
  }
}
if (values.json) console.log(JSON.stringify({ rel, rows }));
