#!/usr/bin/env node
// What a batch would cost under the union of its sequences' kept sets: decodes a few real prompts
// (the `eval --greedy-prompts` contexts) one by one with a sparsity profile, records every decode
// step's input-channel selection at every layer and site, then lines the sequences up step by step
// and measures, for batches of B of them, the density of the union of their kept sets against the
// density each keeps alone. A batched kernel over the union reads the union's share of the
// weights once per step; the server's per-row selections read each row's own share per row; the
// dense batch reads everything once. (Neuron selections — CATS, CHESS — are counted the same way.)
// Usage: node bench/union-density.mjs -m MODEL --sparsity P [-p 8] [-n 32] [-b 1,2,4,8] [--json]   (after `npm run build`)
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { sparsityPolicy } from '../dist/src/cli/common.js';
import { greedyPrompts } from '../dist/src/eval/tasks.js';
import { Session } from '../dist/src/generate/session.js';

const o = new Command()
  .name('bench/union-density.mjs')
  .requiredOption('-m, --model <name>', 'catalog name or .gguf path')
  .requiredOption('--sparsity <file>', 'a profile from `ctxsparse calibrate`')
  .option('-p, --prompts <n>', 'sequences (prompts)', '8')
  .option('-n, --tokens <n>', 'greedy decode steps per sequence', '32')
  .option('-b, --batch <list>', 'batch sizes', '1,2,4,8')
  .option('-t, --threads <n>', 'kernel threads', '2')
  .option('--json', 'one JSON object on stdout')
  .parse()
  .opts();
const model = loadModel(resolveModel(o.model), { threads: Number(o.threads) });
const sp = sparsityPolicy(o.sparsity, model);
const nPrompts = Number(o.prompts), nTok = Number(o.tokens);
const batches = String(o.batch).split(',').map(Number);
if (batches.some((b) => !(b >= 1 && b <= nPrompts))) { console.error(`--batch: sizes in 1..${nPrompts} (--prompts)`); process.exit(1); }

// the selections of one sequence: per decode step, a map "layer/site" → (kept indices, width)
let cur = null;
const inner = sp.policy;
const recording = {
  name: inner.name,
  selectsNeurons: inner.selectsNeurons,
  inputChannels(l, site, x) {
    const s = inner.inputChannels(l, site, x);
    if (cur) cur.set(`${l}/${site}`, { idx: s ? Array.from(s.idx.subarray(0, s.n)) : null, width: x.length });
    return s;
  },
  neurons(l, g) {
    const s = inner.neurons(l, g);
    if (cur) cur.set(`${l}/neurons`, { idx: s ? Array.from(s.idx.subarray(0, s.n)) : null, width: g.length });
    return s;
  },
  heads: (l, x) => inner.heads(l, x),
};
const { prompts } = greedyPrompts(nPrompts);
const seqs = [];
for (const text of prompts) {
  const session = new Session(model, { policy: recording });
  const ids = model.tokenizer.encode(text, { parseSpecial: false });
  const steps = [];
  let i = 0;
  // the prompt is computed dense (as generate does); every decode step after it is recorded
  for (const _ of session.generate(ids, { maxTokens: nTok, temperature: 0 })) {
    if (++i >= nTok) break;
    cur = new Map();
    steps.push(cur);
  }
  cur = null;
  // the last map belongs to a step whose token was not yielded yet; drop an empty one
  seqs.push(steps.filter((m) => m.size > 0));
}
const nSteps = Math.min(...seqs.map((s) => s.length));
// per site (attn_in, attn_out, ffn_in, ffn_down, neurons; every layer), only where the policy selects
const rows = [];
for (const B of batches) {
  const acc = new Map(); // site → { single, union, count }
  for (let b0 = 0; b0 + B <= seqs.length; b0 += B) {
    for (let st = 0; st < nSteps; st++) {
      for (const key of seqs[b0][st].keys()) {
        const sels = seqs.slice(b0, b0 + B).map((s) => s[st].get(key));
        if (sels.some((s) => !s || !s.idx)) continue; // a dense site (or a row that kept everything)
        const width = sels[0].width;
        const kept = new Set();
        let one = 0;
        for (const s of sels) {
          one += s.idx.length / width;
          for (const c of s.idx) kept.add(c);
        }
        const site = key.split('/')[1];
        const a = acc.get(site) ?? { single: 0, union: 0, count: 0 };
        a.single += one / B;
        a.union += kept.size / width;
        a.count++;
        acc.set(site, a);
      }
    }
  }
  for (const [site, a] of acc) {
    const single = a.single / a.count, union = a.union / a.count;
    rows.push({ batch: B, site, single_density: +single.toFixed(4), union_density: +union.toFixed(4), union_over_single: +(union / single).toFixed(3) });
  }
}
const out = { model: o.model, profile: o.sparsity, prompts: seqs.length, decode_steps: nSteps, rows };
if (o.json) console.log(JSON.stringify(out));
else {
  console.log(`${o.model}, ${o.sparsity}: ${seqs.length} sequences × ${nSteps} decode steps; density kept per site (mean over layers and steps)`);
  console.log('| batch | site | each alone | union of the batch | union / alone |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.batch} | ${r.site} | ${(100 * r.single_density).toFixed(1)}% | ${(100 * r.union_density).toFixed(1)}% | ×${r.union_over_single} |`);
}
model.kernels.close?.();
