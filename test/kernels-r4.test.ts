// Four rows interleaved (asm/r4.ts): packing keeps every row's bytes (read back with ggmlRow and
// the wasm decoder), the decode mat-vec and the row gathers agree with the reference, the
// transposed copies built from packed weights are byte-identical to those built from ggml rows,
// a batch (matmul, any token count) gives every token exactly what a lone mat-vec gives it, and
// (Q8_0, the output layers) a gathered row has the full mat-vec's bits and the sparse head's screen
// built from packed rows is the one built from ggml rows.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createWasmKernels, relaxedSimdAvailable, type WasmKernels } from '../src/kernels/wasm/index.js';
import { matvecQ8 } from '../src/kernels/ref/q8.js';
import { ggmlRow, type QTensor } from '../src/model/tensor.js';
import { dequantize } from '../src/quant/dequant.js';
import { GGMLType, quantInfo } from '../src/quant/types.js';
import { screenBytes } from '../src/sparsity/head.js';
import { mulberry32 } from './helpers.js';
import { makeTensor, randVec } from './kernel-helpers.js';

const FLAVOURS = relaxedSimdAvailable() ? (['plain', 'relaxed'] as const) : (['plain'] as const);
const TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q8_0].map((id) => quantInfo(id)!);
const instances: WasmKernels[] = [];
function kernels(simd: 'plain' | 'relaxed', threads: number, interleave = true): WasmKernels {
  const k = createWasmKernels({ simd, threads, activations: 'q8', interleave });
  instances.push(k);
  return k;
}
test.after(() => { for (const k of instances) k.close(); });

/** Q8_0 codes as ggml writes them, in [-127, 127] (random bytes hold −128 now and then). */
function ggmlCodes(W: QTensor): QTensor {
  if (W.type.id === GGMLType.Q8_0) {
    for (let o = W.offset; o < W.offset + W.rows * W.rowBytes; o += 34) for (let j = 2; j < 34; j++) if (W.data[o + j] === 0x80) W.data[o + j] = 0x81;
  }
  return W;
}

/** W's rows as a plain (unpacked) tensor in ordinary memory: the reference's view. */
function copyOf(W: QTensor): QTensor {
  return { ...W, data: W.data.slice(W.offset, W.offset + W.rows * W.rowBytes), offset: 0 };
}

for (const q of TYPES) {
  test(`r4 ${q.name}: packing keeps every row; mat-vec, gathers, copies and batches agree`, () => {
    for (const simd of FLAVOURS) {
      for (const [rows, cols] of [[4, 32], [12, 96], [36, 576]] as const) {
        const got1: Float32Array[] = [];
        for (const threads of [1, 2]) {
          const rnd = mulberry32(rows * 7 + cols); // the same inputs for both thread counts
          const k = kernels(simd, threads);
          const W = ggmlCodes(makeTensor(k, q, rows, cols, mulberry32(rows * 31 + cols)));
          const orig = copyOf(W);
          const P = k.pack(W);
          assert.equal(P.layout, 'r4', `${q.name} ${rows}x${cols}`);
          // every row reads back exactly: the JS reader and the wasm decoder
          const a = new Float32Array(cols), b = new Float32Array(cols);
          for (let r = 0; r < rows; r++) {
            const g = ggmlRow(P, r);
            assert.deepEqual(g.data.subarray(g.offset, g.offset + W.rowBytes), orig.data.subarray(r * W.rowBytes, (r + 1) * W.rowBytes), `row ${r} bytes`);
            dequantize(q.id, orig.data, r * W.rowBytes, a, 0, cols);
            k.dequantizeRow(P, r, b);
            assert.deepEqual(b, a, `row ${r} decoded`);
          }
          const x = randVec(cols, rnd);
          x[(rnd() * cols) | 0] = 9;
          // dense mat-vec: the row-by-row kernel on the same rows unpacked sums the same integers in
          // another float order; the f64 reference (same 8-bit activation) agrees to its scheme's rounding
          const U = ggmlCodes(makeTensor(k, q, rows, cols, mulberry32(rows * 31 + cols)));
          const want = new Float32Array(rows);
          k.matvec(U, x, want);
          const ref = new Float64Array(rows);
          matvecQ8(orig, x, ref);
          const out = new Float32Array(rows);
          k.matvec(P, x, out);
          const scale = Math.max(1e-3, ...Array.from(want, Math.abs));
          for (let r = 0; r < rows; r++) {
            assert.ok(Math.abs(out[r]! - want[r]!) <= 1e-5 * scale, `${q.name} ${simd} t${threads} row ${r}: ${out[r]} vs ${want[r]}`);
            assert.ok(Math.abs(out[r]! - ref[r]!) <= 1e-3 * scale, `${q.name} ${simd} t${threads} row ${r}: ${out[r]} vs reference ${ref[r]}`);
          }
          got1.push(out);
          // a row gather: the selected rows, the others zero
          const idx = Int32Array.from({ length: rows }, (_, i) => i).filter((i) => i % 3 !== 1);
          const sel = new Float32Array(rows).fill(7);
          k.matvec(P, x, sel, { rows: { idx, n: idx.length } });
          for (let r = 0; r < rows; r++) {
            const w = idx.includes(r) ? want[r]! : 0;
            assert.ok(Math.abs(sel[r]! - w) <= 1e-5 * scale, `gather row ${r}: ${sel[r]} vs ${w}`);
            if (q.id === GGMLType.Q8_0 && idx.includes(r)) assert.equal(sel[r], out[r], `${q.name} gather row ${r}: not the mat-vec's bits`);
          }
          if (q.id === GGMLType.Q8_0 && cols % 64 === 0) {
            const bytes = screenBytes(rows, cols);
            const sp = k.alloc(bytes), su = k.alloc(bytes);
            // its columns reordered (an energy per column) as the sparse head builds it
            const energy = Float64Array.from({ length: cols }, () => rnd());
            assert.ok(k.screenBuild(P, sp, false, energy) && k.screenBuild(U, su, false, energy));
            assert.deepEqual(sp, su, `${q.name} ${rows}x${cols}: screen from packed rows`);
          }
          // the transposed copy built from packed rows is the one built from ggml rows
          // (or neither has one: Q8_0's input-sparse linears are read in place)
          assert.deepEqual(k.transposedCopy(P)?.bytes, k.transposedCopy(U)?.bytes);
          // a batch of n tokens: each token row bit-identical to that token's lone mat-vec
          for (const n of [1, 2, 3, 4, 5, 6, 7, 9]) {
            const X = new Float32Array(n * cols);
            for (let t = 0; t < n; t++) X.set(randVec(cols, rnd), t * cols);
            const Out = new Float32Array(n * rows);
            k.matmul(P, X, n, Out);
            for (let t = 0; t < n; t++) {
              const one = new Float32Array(rows);
              k.matvec(P, X.subarray(t * cols, (t + 1) * cols), one);
              assert.deepEqual(Out.subarray(t * rows, (t + 1) * rows), one, `${q.name} ${simd} t${threads} n ${n} token ${t}`);
            }
          }
        }
        assert.deepEqual(got1[1], got1[0], `${q.name} ${simd} ${rows}x${cols}: 2 threads differ from 1`);
      }
    }
  });
}

test('r4: pack leaves alone what it has no layout for (rows not in fours, other types, f32 activations, interleave off)', () => {
  const k = kernels('plain', 1);
  const q41 = quantInfo(GGMLType.Q4_1)!;
  assert.equal(k.pack(makeTensor(k, q41, 6, 64, mulberry32(1))).layout, undefined);
  assert.equal(k.pack(makeTensor(k, quantInfo(GGMLType.Q6_K)!, 8, 256, mulberry32(2))).layout, undefined);
  // a Q8_0 code of −128 (never written by ggml) keeps the rows as they are, and their sums right
  const q80 = quantInfo(GGMLType.Q8_0)!;
  const M = ggmlCodes(makeTensor(k, q80, 8, 64, mulberry32(5)));
  M.data[M.offset + 3 * M.rowBytes + 34 + 7] = 0x80;
  const x = randVec(64, mulberry32(6));
  const before = new Float32Array(8);
  k.matvec(M, x, before);
  const kept = k.pack(M);
  assert.equal(kept.layout, undefined);
  const after = new Float32Array(8);
  k.matvec(kept, x, after);
  assert.deepEqual(after, before);
  const ref = new Float64Array(8);
  matvecQ8(copyOf(M), x, ref);
  for (let r = 0; r < 8; r++) assert.ok(Math.abs(after[r]! - ref[r]!) <= 1e-3 * Math.max(1e-3, Math.abs(ref[r]!)) + 1e-4, `row ${r}: ${after[r]} vs ${ref[r]}`);
  const off = kernels('plain', 1, false);
  assert.equal(off.pack(makeTensor(off, q41, 8, 64, mulberry32(3))).layout, undefined);
  const f = createWasmKernels({ threads: 1, activations: 'f32' });
  instances.push(f);
  assert.equal(f.pack(makeTensor(f, q41, 8, 64, mulberry32(4))).layout, undefined);
});
