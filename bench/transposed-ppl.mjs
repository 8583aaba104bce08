#!/usr/bin/env node
// What the transposed copies (asm/sparse.ts) cost in quality by themselves: WikiText-2 perplexity
// with every linear computed from its transposed copy at 0% sparsity (a policy that keeps every
// input channel) against the ordinary dense path. The copies keep the original codes, with their
// scales rounded to bfloat16; the other differences are the activation quantization (Q8_0 blocks
// of 32 for every type, where the dense K-quant kernels use Q8_K blocks of 256) and the order of
// the float sums.
// Usage: node bench/transposed-ppl.mjs [-m NAME]... [--chunks 10] [--ctx 512] [--threads N] [--json]
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { perplexity } from '../dist/src/eval/perplexity.js';

const program = new Command()
  .name('bench/transposed-ppl.mjs')
  .option('-m, --model <name>', 'catalog name or .gguf path (repeatable)', (v, a) => [...a, ...v.split(',')], [])
  .option('--chunks <n>', 'chunks of WikiText-2', '10')
  .option('--ctx <n>', 'context per chunk', '512')
  .option('--threads <n>', 'threads')
  .option('--json', 'one JSON array on stdout')
  .parse();
const o = program.opts();
const text = readFileSync(new URL('../../shared/eval/wikitext-2-raw/wiki.test.raw', import.meta.url), 'utf8');
const models = o.model.length ? o.model : ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m'];
const rows = [];
for (const name of models) {
  const model = loadModel(resolveModel(name), o.threads ? { threads: Number(o.threads) } : {});
  const all = new Map();
  const everything = (n) => {
    let s = all.get(n);
    if (!s) all.set(n, (s = { idx: Int32Array.from({ length: n }, (_, i) => i), n }));
    return s;
  };
  // every input channel kept: the same product, through the transposed copies
  const keepAll = {
    name: 'keep-all',
    inputChannels: (_l, site, x) => (site === 'attn_q' ? null : everything(x.length)),
    neurons: () => null,
    heads: () => null,
  };
  const opts = { ctx: Number(o.ctx), chunks: Number(o.chunks) };
  const dense = perplexity(model, text, opts);
  const transposed = perplexity(model, text, { ...opts, policy: keepAll });
  const row = { model: name, chunks: dense.chunks, ctx: dense.ctx, dense_ppl: +dense.ppl.toFixed(4), transposed_ppl: +transposed.ppl.toFixed(4),
    change_percent: +(100 * (transposed.ppl / dense.ppl - 1)).toFixed(3) };
  rows.push(row);
  if (!o.json) console.log(`${name.padEnd(28)} dense ${row.dense_ppl.toFixed(4)}  transposed ${row.transposed_ppl.toFixed(4)}  change ${row.change_percent >= 0 ? '+' : ''}${row.change_percent.toFixed(3)}%`);
  model.close?.();
}
if (o.json) console.log(JSON.stringify(rows));
