// The 8-bit activation path (asm/q8.ts) against its TypeScript reference (src/kernels/ref/q8.ts):
// the activation quantizers bit-exact, and mat-vec / mat-mul of every integer-path type equal to
// "dequantized weights · dequantized activation" up to f32 summation, in both SIMD flavours, on
// one thread and on two (where the result must be bit-identical to one thread's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmKernels, relaxedSimdAvailable, type WasmKernels } from '../src/kernels/wasm/index.js';
import { ACT_Q8_0, ACT_Q8_1, ACT_Q8_K, activationKind, dequantizeActivation, matvecQ8, quantizeActivation, sparseActivationKind } from '../src/kernels/ref/q8.js';
import { dequantize } from '../src/quant/dequant.js';
import { f16ToF32 } from '../src/quant/fp16.js';
import { GGMLType, quantInfo, type QuantInfo } from '../src/quant/types.js';
import type { QTensor } from '../src/model/tensor.js';
import type { Selection } from '../src/sparsity/policy.js';
import { mulberry32 } from './helpers.js';
import { makeTensor, randSelection, randVec } from './kernel-helpers.js';

const INT_TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K];
const FLAVOURS = relaxedSimdAvailable() ? (['plain', 'relaxed'] as const) : (['plain'] as const);

const instances = new Map<string, WasmKernels>();
function kernelsFor(simd: 'plain' | 'relaxed', threads: number): WasmKernels {
  const key = `${simd}/${threads}`;
  let k = instances.get(key);
  if (!k) {
    k = createWasmKernels({ simd, threads, activations: 'q8' });
    instances.set(key, k);
  }
  return k;
}
test.after(() => { for (const k of instances.values()) k.close(); });

/** activations with the hard cases: zero blocks, exact halves (ties), one large outlier */
function activation(n: number, rnd: () => number): Float32Array {
  const x = randVec(n, rnd);
  if (n >= 64) x.fill(0, 32, 64);
  for (let i = 0; i < n; i += 37) x[i] = (rnd() < 0.5 ? -1 : 1) * (Math.floor(rnd() * 50) + 0.5) / 127;
  x[(rnd() * n) | 0] = 30;
  return x;
}

test('node has relaxed SIMD (with the V8 flag on Node 20)', () => {
  assert.ok(relaxedSimdAvailable());
});

for (const simd of FLAVOURS) {
  test(`quantized activations (${simd}) equal the reference bit for bit`, () => {
    const k = kernelsFor(simd, 1);
    const rnd = mulberry32(5);
    for (const kind of [ACT_Q8_0, ACT_Q8_1, ACT_Q8_K]) {
      for (const n of [256, 512, 1280]) {
        const x = activation(n, rnd);
        const want = quantizeActivation(kind, x);
        const got = k.quantizedActivation(kind, x);
        for (let i = 0; i < n; i++) if (got.q[i] !== want.q[i]) assert.fail(`kind ${kind} n ${n}: code ${i}: wasm ${got.q[i]} ref ${want.q[i]} (x ${x[i]})`);
        for (let b = 0; b < want.d.length; b++) assert.equal(got.d[b], want.d[b], `kind ${kind} n ${n}: scale ${b}`);
        for (let g = 0; g < n / 16; g++) {
          let s = 0;
          for (let i = 0; i < 16; i++) s += want.q[g * 16 + i]!;
          assert.equal(got.s16[g], s, `kind ${kind}: sum of group ${g}`);
        }
      }
    }
  });
}

/**
 * Tolerance per row: f32 summation (5e-5 of the magnitude: the integer path sums codes with their
 * offsets, e.g. c − 16, so its partial sums run up to ~16× the result's terms) + Q8_1's s rounded
 * to f16 (2^-11 of the min term).
 */
function tolerances(W: QTensor, x: Float32Array, kind = activationKind(W.type.id)): Float64Array {
  const xh = dequantizeActivation(quantizeActivation(kind, x));
  const w = new Float32Array(W.cols);
  const tol = new Float64Array(W.rows);
  for (let r = 0; r < W.rows; r++) {
    dequantize(W.type.id, W.data, W.offset + r * W.rowBytes, w, 0, W.cols);
    let mag = 0;
    for (let c = 0; c < W.cols; c++) mag += Math.abs(w[c]! * xh[c]!);
    let minTerm = 0;
    if (kind === ACT_Q8_1) {
      for (let b = 0; b < W.cols / 32; b++) {
        const o = W.offset + r * W.rowBytes + b * W.type.blockBytes;
        const m = f16ToF32(W.data[o + 2]! | (W.data[o + 3]! << 8));
        let s = 0;
        for (let i = 0; i < 32; i++) s += xh[b * 32 + i]!;
        minTerm += Math.abs(m * s);
      }
    }
    tol[r] = 5e-5 * mag + minTerm / 2048 + 1e-30;
  }
  return tol;
}

function shapes(q: QuantInfo, rnd: () => number): Array<[number, number]> {
  return [1, 3, 7, 13, 31, 64].map((rows) => [rows, q.blockSize * (1 + ((rnd() * (q.blockSize === 32 ? 8 : 3)) | 0))]);
}

for (const t of INT_TYPES) {
  const q = quantInfo(t)!;
  test(`q8 matvec ${q.name}: wasm == reference, both SIMD flavours, 1 and 2 threads`, () => {
    const rnd = mulberry32(300 + t);
    for (const [rows, cols] of shapes(q, rnd)) {
      const base = kernelsFor('plain', 1);
      const x = activation(cols, rnd);
      const rowSel = randSelection(rows, 0.5, rnd);
      const inSel = randSelection(cols, 0.6, rnd);
      for (const simd of FLAVOURS) {
        const k1 = kernelsFor(simd, 1), k2 = kernelsFor(simd, 2);
        // each instance has its own memory: the same bytes in each
        const W1 = makeTensor(k1, q, rows, cols, mulberry32(rows * 7919 + cols));
        const W2 = makeTensor(k2, q, rows, cols, mulberry32(rows * 7919 + cols));
        // input selections of the types with a transposed copy: test/kernels-sparse.test.ts
        const variants: Array<[string, Selection | null, Selection | null]> = [['dense', null, null], ['rows', rowSel, null]];
        if (k1.transposedCopy(W1) === null) variants.push(['inputs', null, inSel]);
        for (const [label, rs, is] of variants) {
          let xm = x;
          if (is) {
            xm = new Float32Array(cols);
            for (let i = 0; i < is.n; i++) xm[is.idx[i]!] = x[is.idx[i]!]!;
          }
          const kind = is ? sparseActivationKind(t) : activationKind(t);
          const want = new Float64Array(rows);
          matvecQ8(W1, xm, want, kind);
          const tol = tolerances(W1, xm, kind);
          const got1 = new Float32Array(rows).fill(7), got2 = new Float32Array(rows).fill(7);
          k1.matvec(W1, x, got1, { rows: rs, inputs: is });
          k2.matvec(W2, x, got2, { rows: rs, inputs: is });
          for (let r = 0; r < rows; r++) {
            const kept = !rs || Array.from(rs.idx.subarray(0, rs.n)).includes(r);
            const w = kept ? want[r]! : 0;
            if (!(Math.abs(got1[r]! - w) <= tol[r]!)) assert.fail(`${q.name} ${rows}x${cols} ${simd} ${label} row ${r}: wasm ${got1[r]} ref ${w} tol ${tol[r]}`);
            assert.equal(got2[r], got1[r], `${q.name} ${simd} ${label} row ${r}: 2 threads differ from 1`);
          }
        }
      }
      void base;
    }
  });

  test(`q8 matmul ${q.name}: every token row equals the reference, 1 and 2 threads bit-identical`, () => {
    const rnd = mulberry32(400 + t);
    for (const simd of FLAVOURS) {
      // n = 2, 3, 6, 7: a pair of tokens shares the weight blocks (32-block types), alone or after a group of four
      for (const n of [1, 2, 3, 5, 6, 7, 9]) {
        const rows = 5 + n, cols = q.blockSize * (1 + (n % 3));
        const seed = rows * 131 + cols;
        const X = new Float32Array(n * cols);
        for (let i = 0; i < n; i++) X.set(activation(cols, rnd), i * cols);
        const got: Float32Array[] = [];
        let W1: QTensor | null = null;
        for (const threads of [1, 2]) {
          const k = kernelsFor(simd, threads);
          const W = makeTensor(k, q, rows, cols, mulberry32(seed));
          W1 ??= W;
          const out = new Float32Array(n * rows);
          k.matmul(W, X, n, out);
          got.push(out);
        }
        assert.deepEqual(got[1], got[0], `${q.name} ${simd} n ${n}: 2 threads differ from 1`);
        const want = new Float64Array(rows);
        for (let i = 0; i < n; i++) {
          const x = X.subarray(i * cols, (i + 1) * cols);
          matvecQ8(W1!, x, want);
          const tol = tolerances(W1!, x);
          for (let r = 0; r < rows; r++) {
            const g = got[0]![i * rows + r]!;
            if (!(Math.abs(g - want[r]!) <= tol[r]!)) assert.fail(`${q.name} ${simd} n ${n} token ${i} row ${r}: wasm ${g} ref ${want[r]} tol ${tol[r]}`);
          }
        }
      }
    }
  });
}

test('q8 kernels keep f32 activations for float weights', () => {
  const k = kernelsFor('plain', 1);
  const q = quantInfo(GGMLType.F16)!;
  const rnd = mulberry32(9);
  const W = makeTensor(k, q, 4, 40, rnd);
  const x = randVec(40, rnd);
  const got = new Float32Array(4);
  k.matvec(W, x, got);
  const w = new Float32Array(40);
  for (let r = 0; r < 4; r++) {
    dequantize(q.id, W.data, W.offset + r * W.rowBytes, w, 0, 40);
    let s = 0;
    for (let c = 0; c < 40; c++) s += w[c]! * x[c]!;
    assert.ok(Math.abs(got[r]! - s) <= 1e-5 * Math.abs(s) + 1e-5, `row ${r}: ${got[r]} vs ${s}`);
  }
});
