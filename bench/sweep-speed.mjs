#!/usr/bin/env node
// Re-measure the decode speed of a finished sweep (`ctxsparse sweep`) in one run: dense and every
// point's profile take turns, round after round, so that the speed ratios in the report see the
// same machine state (a sweep measures each point when it evaluates it, maybe hours apart, on a
// machine doing other work). Rewrites each point's decode_tok_s (marked interleaved), then
// DIR/results.json and DIR/report.html.
// Usage: node bench/sweep-speed.mjs DIR [-n 64] [-r 5] [-t 2] [-m PATH]        (after `npm run build`)
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { benchModel } from '../dist/src/bench/bench.js';
import { fromProfile, loadProfile, checkProfileModel } from '../dist/src/sparsity/index.js';
import { renderReport } from '../dist/src/eval/report.js';
import { pointFile, profileFile } from '../dist/src/eval/sweep.js';

const program = new Command()
  .name('bench/sweep-speed.mjs')
  .argument('<dir>', 'a sweep directory with results.json')
  .option('-n, --n-gen <n>', 'decode steps per run', '64')
  .option('-r, --rounds <n>', 'rounds (each: one run of dense and of every point)', '5')
  .option('-t, --threads <n>', 'threads (default: the machine\'s cores)')
  .option('-m, --model <name|path>', 'the model file, when the sweep\'s model is not a catalog name (default: settings.model)')
  .parse();
const o = program.opts();
const dir = program.args[0];
const fail = (msg) => { console.error(`sweep-speed: ${msg}`); process.exit(1); };
let results;
try {
  results = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'));
} catch (e) {
  fail(`${join(dir, 'results.json')}: ${e.code ?? e.message} (run the sweep to the end first)`);
}
const nGen = Number(o.nGen), rounds = Number(o.rounds);
const threads = o.threads === undefined ? 0 : Number(o.threads);
if (!(nGen > 0) || !(rounds > 0)) fail('-n and -r must be positive');
const model = loadModel(resolveModel(o.model ?? results.settings.model), o.threads === undefined ? {} : { threads });
const usedThreads = model.kernels.threads;
const configs = results.points.map((p) => {
  if (p.method === 'dense') return { p, policy: undefined };
  // the profile beside the results (the recorded path may be from another checkout)
  const file = profileFile(dir, p.method, p.level);
  const profile = loadProfile(file);
  checkProfileModel(profile, file, model);
  return { p, policy: fromProfile(profile, model) };
});
const bench = (c, n) => benchModel(model, usedThreads, { nPrompt: 0, nGen: n, reps: 1, ...(c.policy && { policy: c.policy }) })[0].tokens_per_second.mean;
// one untimed pass of each (builds the transposed copies), then alternate
for (const c of configs) bench(c, 8);
const samples = configs.map(() => []);
for (let r = 0; r < rounds; r++) {
  configs.forEach((c, i) => samples[i].push(bench(c, nGen)));
  process.stderr.write(`\rround ${r + 1}/${rounds}`);
}
process.stderr.write('\n');
const stats = (a) => {
  const mean = a.reduce((s, v) => s + v, 0) / a.length;
  const stdev = a.length > 1 ? Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / (a.length - 1)) : 0;
  return { mean: +mean.toFixed(2), stdev: +stdev.toFixed(2), samples: a.map((v) => +v.toFixed(2)) };
};
const dense = stats(samples[configs.findIndex((c) => !c.policy)] ?? samples[0]);
const points = configs.map((c, i) => {
  const s = stats(samples[i]);
  const decode = { n_gen: nGen, reps: rounds, threads: usedThreads, dense: c.policy ? null : s, sparse: c.policy ? s : null, interleaved: true };
  const p = { ...c.p, decode_tok_s: decode };
  const tmp = `${pointFile(dir, p.method, p.level)}.tmp`;
  writeFileSync(tmp, JSON.stringify(p, null, 2) + '\n');
  renameSync(tmp, pointFile(dir, p.method, p.level));
  console.log(`${(c.p.method === 'dense' ? 'dense' : `${c.p.method} ${c.p.level}`).padEnd(12)} density ${(c.p.density?.linear ?? 1).toFixed(3)}  ${s.mean.toFixed(2).padStart(7)} ± ${s.stdev.toFixed(2)} tok/s  ×${(s.mean / dense.mean).toFixed(3)} vs dense`);
  return p;
});
const out = { ...results, points, written_at: new Date().toISOString() };
writeFileSync(join(dir, 'results.json'), JSON.stringify(out, null, 2) + '\n');
writeFileSync(join(dir, 'report.html'), renderReport(out));
model.close?.();
