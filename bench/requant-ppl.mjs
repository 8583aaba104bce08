#!/usr/bin/env node
// What the transposed layout would cost in quality: WikiText-2 perplexity with every layer
// linear re-quantized along the OUTPUT dimension (per input channel, blocks of B rows with one
// scale, b bits, symmetric or with a min), against the same weights dequantized to f32 unchanged.
// The re-quantized weights are computed in f32 (dequantized back), so this measures the rounding
// only, not a kernel. Each configuration is bits:rows:sym|min.
// Usage: node bench/requant-ppl.mjs MODEL CHUNKS 6:32:sym [5:32:min ...]   (after `npm run build`)
import { readFileSync } from 'node:fs';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { perplexity } from '../dist/src/eval/perplexity.js';
import { dequantize } from '../dist/src/quant/dequant.js';
import { quantInfo } from '../dist/src/quant/types.js';
import { ggmlRow } from '../dist/src/model/tensor.js';
const [name, chunks, ...cfgs] = process.argv.slice(2);
const text = readFileSync(new URL('../../shared/eval/wikitext-2-raw/wiki.test.raw', import.meta.url), 'utf8');
if (!name || !(Number(chunks) > 0) || cfgs.some((c) => !/^\d+:\d+:(sym|min)$/.test(c))) {
  console.error('usage: node bench/requant-ppl.mjs MODEL CHUNKS bits:rows:sym|min ...');
  process.exit(1);
}
const model = loadModel(resolveModel(name), { threads: 2 });
const F32 = quantInfo(0);
const opts = { ctx: 512, chunks: Number(chunks) };
console.log(name, 'quantized', perplexity(model, text, opts).ppl.toFixed(4));
const orig = model.weights.layers.map((L) => ({ ...L }));
const keys = ['wq', 'wk', 'wv', 'wo', 'gate', 'up', 'down'];
const deq = new Map();
function dense(W) {
  let f = deq.get(W); if (f) return f;
  f = new Float32Array(W.rows * W.cols);
  for (let r = 0; r < W.rows; r++) { const { data, offset } = ggmlRow(W, r); dequantize(W.type.id, data, offset, f, r * W.cols, W.cols); }
  deq.set(W, f); return f;
}
function requant(f, R, C, bits, B, mode) {
  const out = new Float32Array(f.length);
  let se = 0, sw = 0;
  for (let c = 0; c < C; c++) for (let r0 = 0; r0 < R; r0 += B) {
    const r1 = Math.min(R, r0 + B);
    let lo = Infinity, hi = -Infinity, amax = 0;
    for (let r = r0; r < r1; r++) { const v = f[r * C + c]; lo = Math.min(lo, v); hi = Math.max(hi, v); amax = Math.max(amax, Math.abs(v)); }
    for (let r = r0; r < r1; r++) {
      const v = f[r * C + c]; let q;
      if (mode === 'min') { const d = (hi - lo) / ((1 << bits) - 1) || 1; q = lo + d * Math.round((v - lo) / d); }
      else { const n = (1 << (bits - 1)) - 1; const d = amax / n || 1; q = d * Math.max(-n - 1, Math.min(n, Math.round(v / d))); }
      out[r * C + c] = q; se += (q - v) ** 2; sw += v * v;
    }
  }
  return { out, rel: Math.sqrt(se / sw) };
}
function install(mk) {
  let relSum = 0, n = 0;
  model.weights.layers.forEach((L, l) => {
    for (const k of keys) {
      const W = orig[l][k];
      const { out, rel } = mk(W);
      relSum += rel; n++;
      const buf = model.kernels.alloc(out.length * 4);
      new Float32Array(buf.buffer, buf.byteOffset, out.length).set(out);
      L[k] = { name: W.name, type: F32, rows: W.rows, cols: W.cols, data: buf, offset: 0, rowBytes: W.cols * 4 };
    }
  });
  return relSum / n;
}
install((W) => ({ out: dense(W), rel: 0 }));
const base = perplexity(model, text, opts).ppl;
console.log(name, 'f32 of the quantized weights', base.toFixed(4));
for (const cfg of cfgs) {
  const [bits, B, mode] = cfg.split(':');
  const rel = install((W) => requant(dense(W), W.rows, W.cols, Number(bits), Number(B), mode));
  const p = perplexity(model, text, opts).ppl;
  console.log(`${name} requant ${cfg}: ppl ${p.toFixed(4)} change ${(100 * (p / base - 1)).toFixed(3)}%  mean rel weight err ${rel.toFixed(4)}`);
}
