#!/usr/bin/env node
// Input-sparse mat-vecs over a whole model, weights streaming from DRAM: every linear of every
// layer once per pass (q, k, v, o, gate, up, down — more bytes than the caches hold), dense and
// with a fixed pseudo-random share of the input channels kept, the configurations taking turns.
// Prints the time per pass and its ratio to dense: what the transposed copies' kernel (asm/sparse.ts)
// gains at each density before any selection, norm or attention cost (bench/kernels.mjs times one
// tensor at a time, from cache).
// Usage: node bench/sparse-linears.mjs [-m NAME] [-t 1,2] [--density 1,0.5,0.25] [--rows] [-r 8] [--json]   (after `npm run build`)
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { createWasmKernels } from '../dist/src/kernels/wasm/index.js';

const program = new Command()
  .name('bench/sparse-linears.mjs')
  .option('-m, --model <name>', 'catalog name or .gguf path', 'smollm2-135m-instruct')
  .option('-t, --threads <list>', 'comma list of thread counts', '1,2')
  .option('--density <list>', 'shares of the input channels kept', '1,0.5,0.25')
  .option('-r, --rounds <n>', 'timed rounds (each: 5 passes of every configuration), after 3 untimed', '8')
  .option('--rows', 'keep that share of the output rows instead (a row gather, as neuron sparsity reads up)')
  .option('--json', 'one JSON array on stdout')
  .parse();
const o = program.opts();
const densities = String(o.density).split(',').map(Number);
if (densities.some((d) => !(d > 0 && d <= 1))) { console.error('--density: shares in (0, 1]'); process.exit(1); }
const rows = [];
for (const threads of String(o.threads).split(',').map(Number)) {
  const kernels = createWasmKernels({ threads });
  const m = loadModel(resolveModel(o.model), { kernels });
  const Ws = [];
  for (const L of m.weights.layers) for (const k of ['wq', 'wk', 'wv', 'wo', 'gate', 'up', 'down']) Ws.push(L[k]);
  let seed = 1;
  const rnd = () => ((seed = Math.imul(seed ^ (seed >>> 15), 2654435761) + 1013904223 >>> 0) / 2 ** 32);
  const xs = Ws.map((W) => new Float32Array(W.cols).map(() => rnd() - 0.5));
  const outs = Ws.map((W) => new Float32Array(W.rows));
  const select = (W, d) => {
    const idx = [];
    for (let c = 0; c < (o.rows ? W.rows : W.cols); c++) if (rnd() < d) idx.push(c);
    return { idx: Int32Array.from(idx), n: idx.length };
  };
  const configs = [{ name: 'dense', density: null, sel: null }, ...densities.map((d) => ({ name: `keep ${d}`, density: d, sel: Ws.map((W) => select(W, d)) }))];
  let bytes = 0;
  for (const W of Ws) bytes += W.rows * W.rowBytes;
  const best = configs.map(() => Infinity);
  for (let r = 0; r < Number(o.rounds) + 3; r++) {
    configs.forEach((c, ci) => {
      const t0 = performance.now();
      for (let k = 0; k < 5; k++) for (let i = 0; i < Ws.length; i++) kernels.matvec(Ws[i], xs[i], outs[i], c.sel ? (o.rows ? { rows: c.sel[i] } : { inputs: c.sel[i] }) : undefined);
      const ms = (performance.now() - t0) / 5;
      if (r >= 3) best[ci] = Math.min(best[ci], ms);
    });
  }
  configs.forEach((c, ci) => {
    const row = { model: o.model, threads, config: c.name, density: c.density, linears: Ws.length, weight_bytes: bytes,
      ms_per_pass: +best[ci].toFixed(3), vs_dense: +(best[ci] / best[0]).toFixed(3) };
    rows.push(row);
    if (!o.json) console.log(`${o.model} t${threads} ${c.name.padEnd(10)} ${row.ms_per_pass.toFixed(2).padStart(8)} ms per pass (${Ws.length} linears)  ×${row.vs_dense.toFixed(3)} of dense time`);
  });
  kernels.close();
}
if (o.json) console.log(JSON.stringify(rows));
