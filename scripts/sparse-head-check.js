#!/usr/bin/env node
// The sparse output layer (--sparse-head) against our own dense one:
//   golden:   every golden prompt (../shared/golden/<model>/greedy.json, all steps), greedy tokens of
//             a sparse-head session vs a dense session — must be identical;
//   wikitext: at every position of the first K chunks of 512 of WikiText-2 test, the sparse head's
//             greedy token vs the dense head's on the same final hidden state (share of equal steps);
//   rows computed exactly per step (median, p99) and bytes of the head read per step vs dense.
// Usage: node scripts/sparse-head-check.js MODEL [--golden] [--wikitext K] [--safety C] [--threads N] [--json]
// (after `npm run build`; long: run under `flock /work/heavy.lock`).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGolden } from '../dist/src/eval/golden.js';
import { Session } from '../dist/src/generate/session.js';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { percentiles } from '../dist/src/sparsity/head.js';
import { HeadAgreementMeter } from '../dist/src/eval/head-agreement.js';
import { buildSparseHead } from '../dist/src/sparsity/head-model.js';

const shared = process.env.CTXSPARSE_SHARED ?? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shared');
const args = process.argv.slice(2);
const flag = (f, d) => { const i = args.indexOf(f); return i >= 0 ? args[i + 1] : d; };
const name = args[0];
const json = args.includes('--json');
const threads = Number(flag('--threads', '2'));
const safety = flag('--safety') !== undefined ? Number(flag('--safety')) : undefined;
const model = loadModel(resolveModel(name), { threads });
const t0 = performance.now();
const head = buildSparseHead(model, { ...(safety !== undefined && { safety }) });
const buildSeconds = (performance.now() - t0) / 1000;
head.record = true;
const W = model.weights.output;
const headBytes = W.rows * W.rowBytes;
const out = { model: name, e_unit: head.eUnit, k_row: head.kRow, safety: head.safety, screen_bytes: head.screenBytes, head_bytes: headBytes, build_seconds: buildSeconds };

if (args.includes('--golden')) {
  const golden = readGolden(join(shared, 'golden', name, 'greedy.json'));
  const cases = [];
  head.stats.rescored.length = 0;
  const bytes0 = head.bytesRead;
  for (const [i, c] of golden.cases.entries()) {
    const ids = model.tokenizer.encode(c.prompt);
    const n = c.greedy_ids.length;
    const dense = [...new Session(model, { ctx: ids.length + n + 1 }).generate(ids, { maxTokens: n, temperature: 0 })].map((e) => e.id);
    const sparse = [...new Session(model, { ctx: ids.length + n + 1, sparseHead: head }).generate(ids, { maxTokens: n, temperature: 0 })].map((e) => e.id);
    let first = -1;
    for (let j = 0; j < Math.max(dense.length, sparse.length); j++) if (dense[j] !== sparse[j]) { first = j; break; }
    cases.push({ case: i, kind: c.kind, steps: dense.length, identical: first < 0, first_difference: first });
    if (!json) console.log(`${name} golden #${i}: ${first < 0 ? `identical (${dense.length} tokens)` : `DIFFERS at step ${first}`}`);
  }
  const r = percentiles(head.stats.rescored);
  out.golden = { cases, identical: cases.filter((c) => c.identical).length, of: cases.length, rescored: r, head_bytes_ratio: (head.bytesRead - bytes0) / Math.max(1, head.stats.rescored.length) / headBytes };
}

const chunks = Number(flag('--wikitext', '0'));
if (chunks > 0) {
  const text = readFileSync(join(shared, 'eval', 'wikitext-2-raw', 'wiki.test.raw'), 'utf8');
  const toks = model.tokenizer.encode(text);
  const ctx = 512;
  const cfg = model.config;
  const D = cfg.dim;
  const fwd = model.createForward(32);
  const kv = model.createCache(ctx);
  let states = [];
  fwd.tap = (tname, layer, data, rows, width) => {
    if (tname === 'residual' && layer === cfg.nLayers - 1) for (let t = 0; t < rows; t++) states.push(data.slice(t * width, (t + 1) * width));
  };
  const h = new Float32Array(D);
  const z = new Float32Array(head.V);
  const meter = new HeadAgreementMeter(head);
  const bos = model.tokenizer.bos;
  const t1 = performance.now();
  let c = 0;
  for (; c < chunks && (c + 1) * ctx <= toks.length; c++) {
    const ids = toks.slice(c * ctx, (c + 1) * ctx);
    if (model.tokenizer.addBosDefault && bos !== undefined) ids[0] = bos;
    states = [];
    kv.truncate(0);
    fwd.run(kv, ids, 0, 'none');
    for (const x of states) {
      model.kernels.rmsnorm(h, 0, x, 0, model.weights.outputNorm, D, cfg.normEps);
      model.kernels.matvec(W, h, z);
      meter.compare(h, 0, z, 0);
    }
    const a = meter.result();
    if (!json) process.stderr.write(`\rchunk ${c + 1}/${chunks}: ${a.equal}/${a.positions} equal, ${((performance.now() - t1) / 1000).toFixed(0)} s`);
  }
  if (!json) process.stderr.write('\n');
  const a = meter.result();
  out.wikitext = { chunks: c, steps: a.positions, equal: a.equal, share: a.share, misses: a.misses, rescored: a.rescored, head_bytes_ratio: a.head_bytes_ratio };
}
model.kernels.close?.();
console.log(JSON.stringify(out, null, json ? 0 : 1));
