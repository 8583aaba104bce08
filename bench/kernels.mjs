#!/usr/bin/env node
// Per-kernel throughput: every distinct mat-vec shape of a model (one layer's linears and the
// output head), timed alone, as GB/s of weight bytes streamed — next to the machine's read
// bandwidth (~33.7 GB/s one thread, ~36.1 two, DATA.md) it says how far each kernel is from the wall.
// With --density, each shape is also timed with that fraction of its input channels kept (random,
// as input-channel sparsity selects them: the transposed copies of asm/sparse.ts), reported as the
// time against dense and as GB/s of the bytes the kept channels hold.
// Usage: node bench/kernels.mjs [--model NAME|PATH]... [--threads 1,2] [--simd auto|plain|relaxed]
//        [--activations q8|f32] [--density 1,0.5,0.3] [--json]        (after `npm run build`)
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { createWasmKernels } from '../dist/src/kernels/wasm/index.js';

const program = new Command()
  .name('bench/kernels.mjs')
  .option('-m, --model <name>', 'catalog name or .gguf path (repeatable)', (v, a) => [...a, ...v.split(',')], [])
  .option('-t, --threads <list>', 'comma list of thread counts', '1,2')
  .option('--simd <flavour>', 'auto, plain or relaxed', 'auto')
  .option('--activations <a>', 'q8 or f32', 'q8')
  .option('--density <list>', 'also time input-sparse mat-vecs keeping these fractions of the input channels', '')
  .option('--json', 'one JSON array on stdout')
  .parse();
const o = program.opts();
const models = o.model.length ? o.model : ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m'];
const threadList = String(o.threads).split(',').map(Number);
const rows = [];
for (const name of models) {
  for (const threads of threadList) {
    const kernels = createWasmKernels({ threads, simd: o.simd, activations: o.activations });
    const m = loadModel(resolveModel(name), { kernels });
    const L = m.weights.layers;
    const list = [];
    // the first two layers cover the models whose layers alternate types (Q4_K / Q6_K, Q5_0 / Q8_0)
    for (const l of [0, 1]) for (const k of ['wq', 'wk', 'wv', 'wo', 'gate', 'up', 'down']) list.push(L[l][k]);
    list.push(m.weights.output);
    const seen = new Set();
    for (const W of list) {
      const key = `${W.type.name} ${W.rows}x${W.cols}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const x = new Float32Array(W.cols).map((_, i) => Math.sin(i * 0.37));
      const out = new Float32Array(W.rows);
      const bytes = W.rows * W.rowBytes;
      const reps = Math.max(10, Math.round(1e9 / bytes / 5));
      const time = (opts) => {
        kernels.matvec(W, x, out, opts);
        let best = Infinity;
        for (let r = 0; r < 5; r++) {
          const t0 = performance.now();
          for (let i = 0; i < reps; i++) kernels.matvec(W, x, out, opts);
          best = Math.min(best, (performance.now() - t0) / reps);
        }
        return best;
      };
      const dense = time(undefined);
      for (const density of [null, ...String(o.density).split(',').filter(Boolean).map(Number)]) {
        let best = dense, inputs = null;
        if (density !== null) {
          // a fixed pseudo-random subset of the channels
          const idx = [];
          for (let c = 0; c < W.cols; c++) if (((Math.imul(c + 1, 2654435761) >>> 0) / 2 ** 32) < density) idx.push(c);
          inputs = { idx: Int32Array.from(idx), n: idx.length };
          best = time({ inputs });
        }
        const kept = inputs ? inputs.n / W.cols : 1;
        const row = { model: name, threads, kernels: kernels.name, tensor: W.name, type: W.type.name, rows: W.rows, cols: W.cols,
          density: inputs ? +kept.toFixed(3) : null, bytes, us: +(best * 1000).toFixed(1), gb_per_s: +(bytes * kept / best / 1e6).toFixed(2),
          vs_dense: +(dense / best).toFixed(2) };
        rows.push(row);
        if (!o.json) {
          console.log(`${name.padEnd(28)} t${threads} ${W.name.padEnd(24)} ${W.type.name.padEnd(5)} ${`${W.rows}x${W.cols}`.padStart(11)} ` +
            `${(inputs ? `kept ${kept.toFixed(2)}` : 'dense').padEnd(10)}${row.us.toFixed(1).padStart(9)} µs ${row.gb_per_s.toFixed(2).padStart(6)} GB/s` +
            (inputs ? `  ×${row.vs_dense.toFixed(2)} vs dense` : ''));
        }
      }
    }
    kernels.close();
  }
}
if (o.json) console.log(JSON.stringify(rows));
