#!/usr/bin/env node
// The interleaved-rows layout (asm/r4.ts) against the file's ggml rows, in one process: the model
// loaded twice, on two kernel instances (interleave on / off), the two taking turns run by run so
// that both see the same machine state (this host's speed drifts by tens of percent within
// minutes). Prints µs per mat-vec of layer 0's q, gate and down, and decode tok/s, with ratios.
// Usage: node bench/interleaved-vs-rows.mjs [-m MODEL] [-t 1] [-r 9] [--json]   (after `npm run build`)
import { Command } from 'commander';
import { createWasmKernels } from '../dist/src/kernels/wasm/index.js';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';

const o = new Command()
  .name('bench/interleaved-vs-rows.mjs')
  .option('-m, --model <name>', 'catalog name or .gguf path', 'smollm2-135m-instruct')
  .option('-t, --threads <n>', 'kernel threads', '1')
  .option('-r, --rounds <n>', 'timed rounds of each', '9')
  .option('--json', 'one JSON object on stdout')
  .parse()
  .opts();
const threads = Number(o.threads);
const rounds = Number(o.rounds);
const open = (interleave) => loadModel(resolveModel(o.model), { kernels: createWasmKernels({ threads, interleave }) });
const rows = open(false);
const inter = open(true);
const STEPS = 64;

/** Decode STEPS tokens from an empty cache (in the run state, as generation does). */
function decoder(m) {
  const f = m.createForward(1);
  const kv = m.createCache(STEPS + 8);
  return () => {
    kv.truncate(0);
    for (let i = 0; i < STEPS; i++) f.run(kv, [100 + i], i, 'last');
  };
}
/** 200 mat-vecs of layer 0's linear `key`. */
function matvecs(m, key) {
  const W = m.weights.layers[0][key];
  const x = new Float32Array(W.cols).map((_, i) => Math.sin(i));
  const out = new Float32Array(W.rows);
  return () => { for (let i = 0; i < 200; i++) m.kernels.matvec(W, x, out); };
}
const timed = (fn) => { const t = performance.now(); fn(); return performance.now() - t; };
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
/** Medians of alternating runs of a and b (after one untimed run of each). */
function ab(a, b) {
  a(); b();
  const ta = [], tb = [];
  for (let r = 0; r < rounds; r++) { ta.push(timed(a)); tb.push(timed(b)); }
  return [median(ta), median(tb)];
}

const result = { model: o.model, threads, rounds, linears: [], decode: null };
for (const key of ['wq', 'gate', 'down']) {
  const W = inter.weights.layers[0][key];
  const [a, b] = ab(matvecs(rows, key), matvecs(inter, key));
  result.linears.push({ linear: W.name, type: W.type.name, interleaved: W.layout === 'r4', rows_us: a * 5, interleaved_us: b * 5, speedup: a / b });
}
const [a, b] = ab(decoder(rows), decoder(inter));
result.decode = { rows_tok_s: (STEPS * 1000) / a, interleaved_tok_s: (STEPS * 1000) / b, speedup: a / b };
if (o.json) console.log(JSON.stringify(result));
else {
  for (const l of result.linears) {
    console.log(`${o.model} t${threads} ${l.linear} ${l.type}${l.interleaved ? '' : ' (not interleaved)'}: ggml rows ${l.rows_us.toFixed(1)} µs, interleaved ${l.interleaved_us.toFixed(1)} µs, ×${l.speedup.toFixed(2)}`);
  }
  const d = result.decode;
  console.log(`${o.model} t${threads} decode: ggml rows ${d.rows_tok_s.toFixed(1)} tok/s, interleaved ${d.interleaved_tok_s.toFixed(1)} tok/s, ×${d.speedup.toFixed(2)}`);
}
rows.kernels.close();
inter.kernels.close();
