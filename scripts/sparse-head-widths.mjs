#!/usr/bin/env node
// The sparse head's first-stage widths against each other in one process: `head.logits` alone on
// final states of WikiText-2 text, one head per width (built without touching the cache), taking
// turns state by state, three passes; the dense head's mat-vec timed beside them.
// Usage: node scripts/sparse-head-widths.mjs MODEL W1,W2,... [STATES=256] [OFFSET=200000] [THREADS=2]   (after `npm run build`)
// (a width equal to the number of 64-column blocks is the one-stage screen)
import { readFileSync } from 'node:fs';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { buildSparseHead, finalStates } from '../dist/src/sparsity/head-model.js';
import { defaultCalibrationFile } from '../dist/src/sparsity/calibrate.js';

const [name, list, nArg, offArg, thArg] = process.argv.slice(2);
if (!name || !list) {
  console.error('usage: node scripts/sparse-head-widths.mjs MODEL W1,W2,... [STATES] [OFFSET] [THREADS]');
  process.exit(1);
}
const widths = list.split(',').map(Number), n = Number(nArg ?? 256), off = Number(offArg ?? 200000);
const m = loadModel(resolveModel(name), { threads: Number(thArg ?? 2) });
const heads = widths.map((w) => buildSparseHead(m, { firstStage: w }));
const text = readFileSync(defaultCalibrationFile(), 'utf8').slice(off, off + 80000);
const states = finalStates(m, m.tokenizer.encode(text).slice(0, n), { chunk: 256 });
const W = m.weights.output, out = new Float32Array(W.rows), z = new Float32Array(W.rows);
const t = widths.map(() => 0), first = widths.map(() => []), rows = widths.map(() => []);
let td = 0;
for (let pass = 0; pass < 3; pass++) {
  for (const h of states) {
    let t0 = performance.now();
    m.kernels.matvec(W, h, z);
    td += performance.now() - t0;
    heads.forEach((hd, k) => {
      t0 = performance.now();
      const r = hd.logits(h, out);
      t[k] += performance.now() - t0;
      if (pass === 0) { rows[k].push(r); if (hd.lastFirst >= 0) first[k].push(hd.lastFirst); }
    });
  }
}
const N = 3 * states.length;
const med = (a) => (a.length ? [...a].sort((x, y) => x - y)[a.length >> 1] : '-');
console.log(`${name}: ${states.length} WikiText-2 states from character ${off}, ${m.kernels.threads} thread(s); dense head ${(td / N).toFixed(3)} ms`);
widths.forEach((w, k) => console.log(`  first stage ${w} of ${heads[k].screen.nb} blocks: ${(t[k] / N).toFixed(3)} ms per step; rows kept by the first stage median ${med(first[k])}, computed exactly median ${med(rows[k])}`));
m.kernels.close();
