// Random tensors and vectors for the kernel tests.
import type { WasmKernels } from '../src/kernels/wasm/index.js';
import type { QTensor } from '../src/model/tensor.js';
import { GGMLType, type QuantInfo } from '../src/quant/types.js';
import { f32ToBF16, f32ToF16 } from '../src/quant/fp16.js';
import type { Selection } from '../src/sparsity/policy.js';

/** byte offsets of the f16 scales inside one block of each quantized type */
export const SCALES: Partial<Record<GGMLType, number[]>> = {
  [GGMLType.Q4_0]: [0],
  [GGMLType.Q4_1]: [0, 2],
  [GGMLType.Q5_0]: [0],
  [GGMLType.Q5_1]: [0, 2],
  [GGMLType.Q8_0]: [0],
  [GGMLType.Q2_K]: [80, 82],
  [GGMLType.Q3_K]: [108],
  [GGMLType.Q4_K]: [0, 2],
  [GGMLType.Q5_K]: [0, 2],
  [GGMLType.Q6_K]: [208],
};

/** Random valid bytes for `rows` rows of `cols` elements of type q at dst[0..). */
export function fillRandom(q: QuantInfo, dst: Uint8Array, rows: number, cols: number, rnd: () => number): void {
  const n = rows * cols;
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  if (q.id === GGMLType.F32) {
    for (let i = 0; i < n; i++) dv.setFloat32(4 * i, rnd() * 2 - 1, true);
    return;
  }
  if (q.id === GGMLType.F16 || q.id === GGMLType.BF16) {
    const conv = q.id === GGMLType.F16 ? f32ToF16 : f32ToBF16;
    for (let i = 0; i < n; i++) dv.setUint16(2 * i, conv(rnd() * 2 - 1), true);
    return;
  }
  const bytes = (n / q.blockSize) * q.blockBytes;
  for (let i = 0; i < bytes; i++) dst[i] = (rnd() * 256) | 0;
  const sc = SCALES[q.id]!;
  for (let o = 0; o < bytes; o += q.blockBytes) {
    // scales like a real model's: small, either sign (mins too), now and then a subnormal / zero
    for (const s of sc) {
      const u = rnd();
      const v = u < 0.03 ? 0 : u < 0.06 ? (rnd() - 0.5) * 1e-6 : (rnd() * 2 - 1) * 0.05;
      dv.setUint16(o + s, f32ToF16(v), true);
    }
  }
}

export function makeTensor(k: WasmKernels, q: QuantInfo, rows: number, cols: number, rnd: () => number, pad = 0): QTensor {
  const rowBytes = (cols / q.blockSize) * q.blockBytes;
  // a random offset inside the view, so that rows start unaligned
  const data = k.alloc(pad + rows * rowBytes + 8);
  fillRandom(q, data.subarray(pad), rows, cols, rnd);
  return { name: `rand-${q.name}-${rows}x${cols}`, type: q, rows, cols, data, offset: pad, rowBytes };
}

export function randVec(n: number, rnd: () => number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (rnd() * 2 - 1) * (rnd() < 0.05 ? 20 : 1);
  return v;
}

export function randSelection(n: number, keep: number, rnd: () => number): Selection {
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (rnd() < keep) idx.push(i);
  const a = new Int32Array(idx.length + 3); // longer than n, like a reused buffer
  a.set(idx);
  return { idx: a, n: idx.length };
}

