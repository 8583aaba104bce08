#!/usr/bin/env node
// Two builds of the engine in one process, taking turns: the way to tell a kernel change from the
// host's noise here (the machine's speed moves by up to 25% within minutes). Each build's `dist/src`
// loads the model with its own kernels; then either the mat-vecs of every tensor of some types, or
// decode steps, alternate between the two, and the medians and their ratio are printed, with the
// largest difference between the two builds' outputs (0 for a change that keeps the sums).
// Build the old one in a worktree first, e.g.
//   git worktree add /tmp/old HEAD~1 && ln -s "$PWD/node_modules" /tmp/old/node_modules && (cd /tmp/old && npm run build)
// Usage: node bench/ab-builds.mjs --old /tmp/old/dist/src [--new dist/src] -m MODEL [-t 1] [--types Q4_K,Q6_K [--keep 0.5] | --output | --decode [--at POS]] [-r 30]
// (remove the worktree's node_modules link before `git worktree remove`)
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';

const o = new Command()
  .name('bench/ab-builds.mjs')
  .requiredOption('--old <dir>', "the other build's dist/src")
  .option('--new <dir>', "this build's dist/src", new URL('../dist/src', import.meta.url).pathname)
  .requiredOption('-m, --model <name>', 'catalog name or .gguf path')
  .option('-t, --threads <n>', 'kernel threads', '1')
  .option('--types <list>', 'time the mat-vecs of every layer tensor of these types (comma list)', '')
  .option('--output', 'time the output layer\'s mat-vec alone')
  .option('--keep <share>', 'with --types: keep this share of the input channels (the same pseudo-random ones in both builds), through the transposed copies')
  .option('--decode', 'time decode steps instead (48 per run, fixed token ids)')
  .option('--at <pos>', 'with --decode: the steps start at this position, after a prompt of that many tokens (not timed)', '0')
  .option('-r, --rounds <n>', 'runs of each build, alternating', '30')
  .parse()
  .opts();
const types = String(o.types).split(',').filter(Boolean);
if (!o.decode && !o.output && types.length === 0) { console.error('bench/ab-builds.mjs: give --types, --output or --decode'); process.exit(1); }
const keep = o.keep === undefined ? null : Number(o.keep);
if (keep !== null && !(keep > 0 && keep <= 1)) { console.error('bench/ab-builds.mjs: --keep takes a share in (0, 1]'); process.exit(1); }
let seed = 1;
const rnd = () => ((seed = Math.imul(seed ^ (seed >>> 15), 2654435761) + 1013904223 >>> 0) / 2 ** 32);
let selection = null;

const sets = {};
for (const [k, root] of [['old', o.old], ['new', o.new]]) {
  const base = pathToFileURL(resolve(root)).href;
  const { loadModel } = await import(`${base}/model/load.js`);
  const { resolveModel } = await import(`${base}/models/catalog.js`);
  const m = loadModel(resolveModel(o.model), { threads: Number(o.threads) });
  const S = { m };
  if (o.decode) {
    S.f = m.createForward(64);
    S.kv = m.createCache(Number(o.at) + 64);
    S.prompt = Array.from({ length: Number(o.at) }, (_, i) => (i * 104729) % 1000 + 10);
  } else {
    const Ws = [];
    if (o.output) Ws.push(m.weights.output);
    else for (const L of m.weights.layers) for (const W of Object.values(L)) if (W && W.type && types.includes(W.type.name)) Ws.push(W);
    if (Ws.length === 0) { console.error(`bench/ab-builds.mjs: ${o.model} has no layer tensor of type ${types.join(', ')}`); process.exit(1); }
    const cols = Ws[0].cols;
    S.Ws = Ws.filter((W) => W.cols === cols); // one input for all of them
    const u = m.kernels.alloc(4 * cols);
    S.x = new Float32Array(u.buffer, u.byteOffset, cols);
    for (let i = 0; i < cols; i++) S.x[i] = Math.sin(i * 0.37);
    S.outs = S.Ws.map((W) => { const b = m.kernels.alloc(4 * W.rows); return new Float32Array(b.buffer, b.byteOffset, W.rows); });
    S.bytes = S.Ws.reduce((a, W) => a + W.rows * W.rowBytes, 0);
    if (keep !== null && !selection) {
      const idx = [];
      for (let c = 0; c < cols; c++) if (rnd() < keep) idx.push(c);
      selection = { idx: Int32Array.from(idx), n: idx.length };
    }
  }
  sets[k] = S;
}

const N = 48;
function run(S) {
  const t0 = performance.now();
  if (o.decode) {
    const at = S.prompt.length;
    S.kv.truncate(at);
    const t1 = performance.now();
    for (let i = 0; i < N; i++) S.f.run(S.kv, [(i * 7919) % 1000 + 10], at + i, 'last');
    return N / ((performance.now() - t1) / 1000); // tok/s
  }
  const opts = selection ? { inputs: selection } : undefined;
  for (let rep = 0; rep < 5; rep++) S.Ws.forEach((W, i) => S.m.kernels.matvec(W, S.x, S.outs[i], opts));
  return (performance.now() - t0) / 5; // ms per pass
}
for (const S of [sets.old, sets.new]) {
  // the prompt once: every run decodes from its end (the cache is cut back to it)
  if (o.decode && S.prompt.length) for (let i = 0; i < S.prompt.length; i += 64) S.f.run(S.kv, S.prompt.slice(i, i + 64), i, 'none');
  run(S);
}
const res = { old: [], new: [] };
for (let r = 0; r < Number(o.rounds); r++) for (const k of r % 2 ? ['old', 'new'] : ['new', 'old']) res[k].push(run(sets[k]));
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const a = med(res.old), b = med(res.new);
if (o.decode) {
  console.log(`${o.model} t${o.threads} decode: old ${a.toFixed(1)} tok/s, new ${b.toFixed(1)} tok/s, ×${(b / a).toFixed(3)}`);
} else {
  const S = sets.new;
  console.log(`${o.model} t${o.threads} ${o.output ? `output (${S.Ws[0].type.name})` : types.join(',')}${selection ? ` keep ${keep} (${selection.n} channels)` : ''}: ${S.Ws.length} tensors, ${(S.bytes / 1e6).toFixed(1)} MB per pass: old ${a.toFixed(3)} ms (${(S.bytes / a / 1e6).toFixed(2)} GB/s), new ${b.toFixed(3)} ms (${(S.bytes / b / 1e6).toFixed(2)} GB/s), ×${(a / b).toFixed(3)}`);
  let d = 0;
  sets.old.outs.forEach((x, i) => { const y = sets.new.outs[i]; for (let j = 0; j < x.length; j++) d = Math.max(d, Math.abs(x[j] - y[j])); });
  console.log(`largest |old − new| over the outputs: ${d}`);
}
for (const S of Object.values(sets)) S.m.kernels.close?.();
