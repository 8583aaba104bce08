// Attention of one query position over a span of the KV cache, in plain TypeScript.
import type { AttentionArgs } from '../kernels.js';
import { softmax } from './ops.js';

let scores = new Float32Array(0);

export function attention(a: AttentionArgs): void {
  const { q, qOffset, k, v, start, n, nHeads, nKvHeads, headDim, headDimV, scale, out, outOffset, heads } = a;
  const kvDim = nKvHeads * headDim;
  const kvDimV = nKvHeads * headDimV;
  const group = nHeads / nKvHeads;
  if (scores.length < n) scores = new Float32Array(Math.max(n, 2 * scores.length));
  const s = scores;
  if (heads) out.fill(0, outOffset, outOffset + nHeads * headDimV);
  const nh = heads ? heads.n : nHeads;
  for (let hi = 0; hi < nh; hi++) {
    const h = heads ? heads.idx[hi]! : hi;
    const qo = qOffset + h * headDim;
    const kh = Math.floor(h / group);
    for (let j = 0; j < n; j++) {
      const kb = (start + j) * kvDim + kh * headDim;
      let dot = 0;
      for (let i = 0; i < headDim; i++) dot += q[qo + i]! * k[kb + i]!;
      s[j] = dot * scale;
    }
    softmax(s, 0, n);
    const o = outOffset + h * headDimV;
    for (let i = 0; i < headDimV; i++) out[o + i] = 0;
    for (let j = 0; j < n; j++) {
      const vb = (start + j) * kvDimV + kh * headDimV;
      const p = s[j]!;
      for (let i = 0; i < headDimV; i++) out[o + i]! += p * v[vb + i]!;
    }
  }
}
