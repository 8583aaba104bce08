#!/usr/bin/env node
// Decode speed of sparsity profiles against our own dense engine, in one run: the model is loaded
// once per thread count and dense and each profile take turns (run by run), so that the ratios
// see the same machine state. Generation settings as `ctxsparse bench`'s tg test (single-token
// steps from an empty cache; the prompt is not part of it).
// Usage: node bench/sparse-vs-dense.mjs -m MODEL --sparsity a.json,b.json [-n 128] [-r 5] [-t 2] [--json]
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { benchModel } from '../dist/src/bench/bench.js';
import { fromProfile, loadProfile, checkProfileModel } from '../dist/src/sparsity/index.js';

const program = new Command()
  .name('bench/sparse-vs-dense.mjs')
  .requiredOption('-m, --model <name>', 'catalog name or .gguf path')
  .requiredOption('--sparsity <list>', 'comma list of profiles from `ctxsparse calibrate`')
  .option('-n, --n-gen <n>', 'decode steps per run', '128')
  .option('-r, --repetitions <n>', 'timed runs of each configuration', '5')
  .option('-t, --threads <list>', 'comma list of thread counts', '2')
  .option('--json', 'one JSON array on stdout')
  .parse();
const o = program.opts();
const files = String(o.sparsity).split(',').filter(Boolean);
const rows = [];
for (const threads of String(o.threads).split(',').map(Number)) {
  const model = loadModel(resolveModel(o.model), { threads });
  const configs = [{ name: 'dense', policy: undefined }];
  for (const f of files) {
    const profile = loadProfile(f);
    checkProfileModel(profile, f, model);
    configs.push({ name: f, profile, policy: fromProfile(profile, model) });
  }
  const samples = configs.map(() => []);
  // one untimed pass of each (builds the transposed copies), then alternate
  for (const c of configs) benchModel(model, threads, { nPrompt: 0, nGen: 8, reps: 1, ...(c.policy && { policy: c.policy }) });
  for (let r = 0; r < Number(o.repetitions); r++) {
    configs.forEach((c, i) => {
      const [res] = benchModel(model, threads, { nPrompt: 0, nGen: Number(o.nGen), reps: 1, ...(c.policy && { policy: c.policy }) });
      samples[i].push(res.tokens_per_second.mean);
    });
  }
  const mean = (a) => a.reduce((s, v) => s + v, 0) / a.length;
  const dense = mean(samples[0]);
  configs.forEach((c, i) => {
    const tg = mean(samples[i]);
    const row = { model: o.model, threads, config: c.name, method: c.profile?.method ?? 'dense', target: c.profile?.sparsity ?? 0,
      density: c.policy ? +c.policy.realized().linear.toFixed(4) : 1, tg_tok_s: +tg.toFixed(2), samples: samples[i].map((v) => +v.toFixed(2)),
      vs_dense: +(tg / dense).toFixed(3) };
    rows.push(row);
    if (!o.json) console.log(`t${threads} ${row.config.padEnd(36)} density ${row.density.toFixed(3)}  tg ${row.tg_tok_s.toFixed(2).padStart(7)} tok/s  ×${row.vs_dense.toFixed(3)} vs dense`);
  });
  model.close?.();
}
if (o.json) console.log(JSON.stringify(rows));
