#!/usr/bin/env node
// Batched decoding in the engine, without HTTP: B sequences, each with its own cache, stepped
// together (Forward.runBatch, one matmul per linear for all B rows), against one sequence stepped
// alone, the batch sizes taking turns run by run. This is the ceiling of what `serve` can gain from
// concurrent streams (bench/serve-load measures the server itself).
// Usage: node bench/batched-decode.mjs [-m MODEL] [-t 2] [-b 1,2,3,4,8] [-n 48] [-r 5] [--json]   (after `npm run build`)
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';

const o = new Command()
  .name('bench/batched-decode.mjs')
  .option('-m, --model <name>', 'catalog name or .gguf path', 'smollm2-135m-instruct')
  .option('-t, --threads <n>', 'kernel threads', '2')
  .option('-b, --batch <list>', 'comma list of batch sizes (sequences stepped together)', '1,2,3,4,8')
  .option('-n, --steps <n>', 'decode steps per run', '48')
  .option('-r, --repetitions <n>', 'timed runs of each batch size', '5')
  .option('--json', 'one JSON array on stdout')
  .parse()
  .opts();
const sizes = String(o.batch).split(',').map(Number);
const N = Number(o.steps);
const threads = Number(o.threads);
const model = loadModel(resolveModel(o.model), { threads });
const maxB = Math.max(...sizes);
const forward = model.createForward(maxB);
const caches = Array.from({ length: maxB }, () => model.createCache(N + 8));
const V = model.config.vocabSize;

/** Aggregate tok/s of B sequences: a 4-token prompt each, then N steps of B rows (token ids fixed per run, any will do). */
function run(B) {
  for (const kv of caches) kv.truncate(0);
  for (let b = 0; b < B; b++) forward.run(caches[b], [1, (100 + b) % V, (200 + b) % V, (300 + b) % V], 0, 'last');
  const t0 = performance.now();
  for (let i = 0; i < N; i++) forward.runBatch(Array.from({ length: B }, (_, b) => ({ kv: caches[b], token: (i * 31 + b * 7 + 50) % V, pos: 4 + i })));
  return (B * N) / ((performance.now() - t0) / 1000);
}

const samples = new Map(sizes.map((b) => [b, []]));
for (const B of sizes) run(B); // warm-up
for (let r = 0; r < Number(o.repetitions); r++) for (const B of sizes) samples.get(B).push(run(B));
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];
const base = samples.has(1) ? median(samples.get(1)) : NaN;
const rows = sizes.map((B) => ({ model: o.model, threads, batch: B, tok_s: median(samples.get(B)), samples: samples.get(B), vs_one: median(samples.get(B)) / base }));
if (o.json) console.log(JSON.stringify(rows));
else for (const r of rows) console.log(`${r.model} t${threads} batch ${String(r.batch).padStart(2)}: ${r.tok_s.toFixed(1).padStart(7)} tok/s aggregate (median of ${r.samples.length})  ×${r.vs_one.toFixed(2)} of one sequence`);
model.kernels.close?.();
