// Reference for the 8-bit activation path (asm/q8.ts): llama.cpp's activation formats, and the
// mat-vec they define — the dequantized weights times the dequantized activation.
//   Q8_0 / Q8_1: blocks of 32, d = amax/127 rounded to f16, q = round-half-even(x·127/amax)
//   Q8_K:        blocks of 256, iscale = −127/x_m (x_m the element of largest magnitude), d = 1/iscale
//                in f32, q = round-half-even(iscale·x)
// (Q8_1 also carries s = d·Σq rounded to f16 for the weights' min term; the reference uses the
// exact d·Σq, a difference of at most 2^-11 of that term.)

import { f16ToF32, f32ToF16 } from '../../quant/fp16.js';
import { dequantize } from '../../quant/dequant.js';
import { GGMLType } from '../../quant/types.js';
import { ggmlRow, type QTensor } from '../../model/tensor.js';

export const ACT_Q8_0 = 0;
export const ACT_Q8_1 = 1;
export const ACT_Q8_K = 2;

/** The activation kind llama.cpp multiplies a weight type with, or -1 (f32 activations). */
export function activationKind(type: number): number {
  switch (type) {
    case GGMLType.Q4_0: case GGMLType.Q5_0: case GGMLType.Q8_0: return ACT_Q8_0;
    case GGMLType.Q4_1: case GGMLType.Q5_1: return ACT_Q8_1;
    case GGMLType.Q4_K: case GGMLType.Q5_K: case GGMLType.Q6_K: return ACT_Q8_K;
    default: return -1;
  }
}

const f32 = Math.fround;

/** round half to even, as SSE's round-to-nearest and f32x4.nearest */
function rne(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface QuantizedActivation {
  /** codes */
  readonly q: Int8Array;
  /** scale per block (32 or 256 elements) */
  readonly d: Float32Array;
  readonly blockSize: number;
}

export function quantizeActivation(kind: number, x: Float32Array): QuantizedActivation {
  const n = x.length;
  const bs = kind === ACT_Q8_K ? 256 : 32;
  if (n % bs !== 0) throw new RangeError(`quantizeActivation: ${n} elements is not a whole number of ${bs}-blocks`);
  const q = new Int8Array(n);
  const d = new Float32Array(n / bs);
  for (let b = 0; b < n / bs; b++) {
    const o = b * bs;
    let amax = 0, xm = 0;
    for (let i = 0; i < bs; i++) {
      const a = Math.abs(x[o + i]!);
      if (a > amax) { amax = a; xm = x[o + i]!; }
    }
    if (kind === ACT_Q8_K) {
      if (amax === 0) continue;
      const iscale = f32(-127 / xm);
      for (let i = 0; i < bs; i++) q[o + i] = Math.min(127, rne(f32(iscale * x[o + i]!)));
      d[b] = f32(1 / iscale);
    } else {
      const id = amax !== 0 ? f32(127 / amax) : 0;
      for (let i = 0; i < bs; i++) q[o + i] = rne(f32(x[o + i]! * id));
      d[b] = f16ToF32(f32ToF16(f32(amax / 127)));
    }
  }
  return { q, d, blockSize: bs };
}

/** x̂[i] = d(block of i)·q[i] */
export function dequantizeActivation(a: QuantizedActivation): Float32Array {
  const out = new Float32Array(a.q.length);
  for (let i = 0; i < out.length; i++) out[i] = a.d[Math.floor(i / a.blockSize)]! * a.q[i]!;
  return out;
}

/**
 * The activation kind of a mat-vec with an input selection: the types with a transposed copy
 * (asm/sparse.ts: Q4_0, Q4_1, Q5_0, Q4_K, Q6_K) take Q8_0 whatever their dense kind; others keep theirs.
 */
export function sparseActivationKind(type: number): number {
  const transposed = type === GGMLType.Q4_0 || type === GGMLType.Q4_1 || type === GGMLType.Q5_0 || type === GGMLType.Q4_K || type === GGMLType.Q6_K;
  return transposed ? ACT_Q8_0 : activationKind(type);
}

/** The integer path's mat-vec, in f64: out[r] = Σ_c W[r,c]·x̂[c] with x̂ the activation as W's kind (or `kind`) quantizes it. */
export function matvecQ8(W: QTensor, x: Float32Array, out: Float64Array, kind = activationKind(W.type.id)): void {
  const xh = kind < 0 ? x.subarray(0, W.cols) : dequantizeActivation(quantizeActivation(kind, x.subarray(0, W.cols)));
  const w = new Float32Array(W.cols);
  for (let r = 0; r < W.rows; r++) {
    const g = ggmlRow(W, r);
    dequantize(W.type.id, g.data, g.offset, w, 0, W.cols);
    let s = 0;
    for (let c = 0; c < W.cols; c++) s += w[c]! * xh[c]!;
    out[r] = s;
  }
}
