// The transposed copies behind input-channel sparsity (asm/sparse.ts): the layout, decoded here
// independently, must hold the original weights (codes exact, scales rounded to bfloat16); the
// kernel must compute W·x over the kept channels from it, in both SIMD builds, on 1 and 2 threads.
// (Threads split the kept channels and their partial sums are added at the end, so 1 and 2 threads
// round differently; both are held to the same bound against the exact sum.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmKernels, relaxedSimdAvailable, type WasmKernels } from '../src/kernels/wasm/index.js';
import { ACT_Q8_0, dequantizeActivation, quantizeActivation } from '../src/kernels/ref/q8.js';
import { dequantize } from '../src/quant/dequant.js';
import { GGMLType, quantInfo } from '../src/quant/types.js';
import type { QTensor } from '../src/model/tensor.js';
import type { Selection } from '../src/sparsity/policy.js';
import { mulberry32 } from './helpers.js';
import { makeTensor, randSelection, randVec } from './kernel-helpers.js';

const TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q4_K, GGMLType.Q6_K];
const FLAVOURS = relaxedSimdAvailable() ? (['plain', 'relaxed'] as const) : (['plain'] as const);

const instances = new Map<string, WasmKernels>();
function kernelsFor(simd: 'plain' | 'relaxed', threads: number): WasmKernels {
  const key = `${simd}/${threads}`;
  let k = instances.get(key);
  if (!k) instances.set(key, (k = createWasmKernels({ simd, threads })));
  return k;
}
test.after(() => { for (const k of instances.values()) k.close(); });

const bf16 = (b: Uint8Array, o: number): number => new Float32Array(new Uint32Array([(b[o]! | (b[o + 1]! << 8)) << 16]).buffer)[0]!;

/** The weights the transposed copy holds, [rows][cols] in f64, and per element the bound of its scale rounding. */
function decodeTransposed(k: WasmKernels, W: QTensor): { w: Float64Array; bound: Float64Array } {
  const t = k.transposedCopy(W)!;
  const { kind, Rp, panelWidth, panelBytes, bytes } = t;
  const hasMin = kind === 1;
  const off = [8, 0, 16, 32][kind]!;
  const tile = [16, 16, 20, 32][kind]!;
  // tile-major blocks (32 rows × one panel), each: d[32], m[32] (with a min), then one run per channel
  const rowScale = hasMin ? 4 : 2;
  const BB = 32 * rowScale + panelWidth * tile;
  const nP = W.cols / panelWidth;
  assert.equal(panelBytes, (Rp / 32) * BB);
  const w = new Float64Array(W.rows * W.cols);
  const bound = new Float64Array(W.rows * W.cols);
  for (let c = 0; c < W.cols; c++) {
    const j = c % panelWidth;
    for (let r = 0; r < W.rows; r++) {
      const B = (Math.floor(r / 32) * nP + Math.floor(c / panelWidth)) * BB;
      const d = bf16(bytes, B + 2 * (r & 31));
      const m = hasMin ? bf16(bytes, B + 64 + 2 * (r & 31)) : 0;
      const T = B + 32 * rowScale + j * tile;
      const kk = r & 31;
      let q: number;
      if (kind === 3) q = bytes[T + kk]!;
      else {
        const byte = bytes[T + (kind === 2 ? 4 : 0) + (kk & 15)]!;
        q = kk < 16 ? byte & 15 : byte >> 4;
        if (kind === 2) q |= (((bytes[T]! | (bytes[T + 1]! << 8) | (bytes[T + 2]! << 16) | (bytes[T + 3]! << 24)) >>> kk) & 1) << 4;
      }
      w[r * W.cols + c] = d * (q - off) + m;
      // |rounded − exact| ≤ 2^-9 of each of d and m (relative to the exact ones, ≈ the rounded ones)
      bound[r * W.cols + c] = 2 ** -8 * (Math.abs(d * (q - off)) + Math.abs(m)) + 1e-12;
    }
  }
  return { w, bound };
}

for (const type of TYPES) {
  const q = quantInfo(type)!;
  test(`transposed ${q.name}: the copy holds the weights (codes exact, scales to bfloat16)`, () => {
    const rnd = mulberry32(4100 + type);
    const k = kernelsFor('plain', 1);
    for (const rows of [1, 31, 33, 70, 300]) {
      const cols = q.blockSize * (1 + ((rnd() * 3) | 0));
      const W = makeTensor(k, q, rows, cols, rnd, (rnd() * 16) | 0);
      const { w, bound } = decodeTransposed(k, W);
      const row = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        dequantize(type, W.data, W.offset + r * W.rowBytes, row, 0, cols);
        for (let c = 0; c < cols; c++) {
          const e = Math.abs(w[r * cols + c]! - row[c]!);
          if (!(e <= bound[r * cols + c]!)) assert.fail(`${W.name} [${r}, ${c}]: copy ${w[r * cols + c]} vs ${row[c]} (bound ${bound[r * cols + c]})`);
        }
      }
    }
  });

  test(`transposed ${q.name}: input-sparse mat-vec == Σ kept copy·x̂, both SIMD builds, 1 and 2 threads`, () => {
    const rnd = mulberry32(4200 + type);
    for (const rows of [1, 7, 32, 45, 96, 300]) {
      const cols = q.blockSize * (1 + ((rnd() * (q.blockSize === 32 ? 8 : 3)) | 0));
      const x = randVec(cols, rnd);
      const all: Selection = { idx: Int32Array.from({ length: cols }, (_, i) => i), n: cols };
      const sels: Array<[string, Selection]> = [
        ['all', all], ['half', randSelection(cols, 0.5, rnd)], ['tenth', randSelection(cols, 0.1, rnd)],
        ['one', { idx: Int32Array.of(cols - 1), n: 1 }], ['none', { idx: new Int32Array(0), n: 0 }],
      ];
      for (const simd of FLAVOURS) {
        const k1 = kernelsFor(simd, 1), k2 = kernelsFor(simd, 2);
        const W1 = makeTensor(k1, q, rows, cols, mulberry32(rows * 31 + cols));
        const W2 = makeTensor(k2, q, rows, cols, mulberry32(rows * 31 + cols));
        const { w } = decodeTransposed(k1, W1);
        for (const [label, sel] of sels) {
          const xm = new Float32Array(cols);
          for (let i = 0; i < sel.n; i++) xm[sel.idx[i]!] = x[sel.idx[i]!]!;
          const xh = dequantizeActivation(quantizeActivation(ACT_Q8_0, xm));
          const got1 = new Float32Array(rows).fill(7), got2 = new Float32Array(rows).fill(7);
          k1.matvec(W1, x, got1, { inputs: sel });
          k2.matvec(W2, x, got2, { inputs: sel });
          for (let r = 0; r < rows; r++) {
            let want = 0, mag = 0;
            for (let c = 0; c < cols; c++) {
              want += w[r * cols + c]! * xh[c]!;
              mag += Math.abs(w[r * cols + c]! * xh[c]!);
            }
            const tol = 5e-5 * mag + 1e-30;
            if (!(Math.abs(got1[r]! - want) <= tol)) assert.fail(`${q.name} ${rows}x${cols} ${simd} ${label} row ${r}: ${got1[r]} vs ${want} (tol ${tol})`);
            if (!(Math.abs(got2[r]! - want) <= tol)) assert.fail(`${q.name} ${rows}x${cols} ${simd} ${label} row ${r}, 2 threads: ${got2[r]} vs ${want} (tol ${tol})`);
          }
        }
      }
    }
  });
}

test('transposed copies: types without one (Q8_0, F16) keep the masked dense path', () => {
  const k = kernelsFor('plain', 1);
  const rnd = mulberry32(4300);
  for (const type of [GGMLType.Q8_0, GGMLType.F16]) {
    const W = makeTensor(k, quantInfo(type)!, 8, 64, rnd);
    assert.equal(k.transposedCopy(W), null);
  }
});

test('input-sparse mat-vec: bad selections are refused by name; idx may be longer than n; x and out in or outside the memory agree', () => {
  const k = kernelsFor('plain', 1);
  const rnd = mulberry32(4400);
  const q = quantInfo(GGMLType.Q4_1)!;
  const W = makeTensor(k, q, 64, 96, rnd);
  const x = randVec(96, rnd);
  const out = new Float32Array(64);
  assert.throws(() => k.matvec(W, x, out, { inputs: { idx: Int32Array.of(3, 3), n: 2 } }), /input selection must be ascending channels in 0\.\.95 \(got 3 at 1\)/);
  assert.throws(() => k.matvec(W, x, out, { inputs: { idx: Int32Array.of(5, 96), n: 2 } }), /got 96 at 1/);
  assert.throws(() => k.matvec(W, x, out, { inputs: { idx: Int32Array.of(-1), n: 1 } }), /got -1 at 0/);
  // trailing entries past n are not part of the selection
  const a = new Float32Array(64), b = new Float32Array(64);
  k.matvec(W, x, a, { inputs: { idx: Int32Array.of(1, 7, 40, 95), n: 4 } });
  k.matvec(W, x, b, { inputs: { idx: Int32Array.of(1, 7, 40, 95, 2, 0, 99), n: 4 } });
  assert.deepEqual(b, a);
  // the same x placed in the kernel memory (the forward pass's case) gives the same result
  const raw = k.alloc(96 * 4);
  const xin = new Float32Array(raw.buffer, raw.byteOffset, 96);
  xin.set(x);
  const c = new Float32Array(64);
  k.matvec(W, xin, c, { inputs: { idx: Int32Array.of(1, 7, 40, 95), n: 4 } });
  assert.deepEqual(c, a);
  // and so does an output there (written in place: 64 rows, no padding)
  const rawOut = k.alloc(64 * 4);
  const oin = new Float32Array(rawOut.buffer, rawOut.byteOffset, 64);
  k.matvec(W, xin, oin, { inputs: { idx: Int32Array.of(1, 7, 40, 95), n: 4 } });
  assert.deepEqual(Float32Array.from(oin), a);
});
