#!/usr/bin/env node
// Full comparison with llama.cpp's golden greedy runs: every prompt, every step, all three models.
// Usage: node scripts/check-golden.js [model ...] [--json]   (after `npm run build`)
import { checkGoldenCase, readGolden } from '../dist/src/eval/golden.js';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const shared = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const args = process.argv.slice(2);
const json = args.includes('--json');
const names = args.filter((a) => !a.startsWith('--'));
const models = names.length ? names : ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m'];
const reports = [];
let allOk = true;
for (const name of models) {
  const model = loadModel(resolveModel(name));
  const golden = readGolden(join(shared, 'golden', name, 'greedy.json'));
  for (const [i, c] of golden.cases.entries()) {
    const t0 = performance.now();
    // tokens: may part only at llama.cpp near ties (< 0.1); logit errors are measured, not bounded here
    const r = checkGoldenCase(model, c, { logitTolerance: Infinity });
    const row = { model: name, case: i, ...r, margin: r.divergedAt >= 0 ? c.top1_margin[r.divergedAt] : null, seconds: +((performance.now() - t0) / 1000).toFixed(1) };
    delete row.prompt;
    reports.push(row);
    allOk &&= r.ok && r.promptIdsMatch && r.templateMatches !== false;
    if (!json) {
      console.log(`${name} #${i} ${c.kind}: ids ${r.promptIdsMatch ? 'match' : 'DIFFER'}${r.templateMatches === undefined ? '' : `, template ${r.templateMatches ? 'matches' : 'DIFFERS'}`}, ` +
        `${r.divergedAt < 0 ? `all ${r.compared} tokens equal` : `parted at step ${r.divergedAt} (llama.cpp margin ${row.margin})`}, ` +
        `max |logit error| ${r.maxLogitError.toFixed(4)}${r.ok ? '' : `  FAIL: ${r.failure}`}`);
    }
  }
}
if (json) console.log(JSON.stringify(reports));
process.exitCode = allOk ? 0 : 1;
