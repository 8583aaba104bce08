// The WebAssembly SIMD kernels against the reference kernels: random valid blocks of every type,
// ragged sizes, with and without row / input-channel selections, matmul for n = 1..9, the wasm
// decoder bit-exact against the reference dequantizer, matvec/matmul on a real model's tensors,
// and attention over a KV cache in kernel memory (grouped-query shapes, head selections, ragged sizes).
import { test } from 'node:test';
import { closeSync, openSync, readSync } from 'node:fs';
import assert from 'node:assert/strict';
import { createWasmKernels, headsPerUnit, splitChunk, type WasmKernels } from '../src/kernels/wasm/index.js';
import { refKernels } from '../src/kernels/ref/index.js';
import type { QTensor } from '../src/model/tensor.js';
import { allQuantTypes, GGMLType, quantInfo, type QuantInfo } from '../src/quant/types.js';
import { dequantize } from '../src/quant/dequant.js';
import { readGGUFData, readGGUFHeader } from '../src/formats/gguf.js';
import type { Selection } from '../src/sparsity/policy.js';
import type { AttentionArgs } from '../src/kernels/kernels.js';
import type { ModelConfig } from '../src/model/config.js';
import { KVCache } from '../src/model/kv-cache.js';
import { catalogModel, mulberry32 } from './helpers.js';
import { makeTensor, randSelection, randVec } from './kernel-helpers.js';

/** Σ_c |W[r,c]·x[c]| per row: the scale of the rounding error of an f32 dot product */
function magnitudes(W: QTensor, X: Float32Array, n: number): Float64Array {
  const w = new Float32Array(W.cols);
  const mag = new Float64Array(n * W.rows);
  for (let r = 0; r < W.rows; r++) {
    dequantize(W.type.id, W.data, W.offset + r * W.rowBytes, w, 0, W.cols);
    for (let t = 0; t < n; t++) {
      let s = 0;
      for (let c = 0; c < W.cols; c++) s += Math.abs(w[c]! * X[t * W.cols + c]!);
      mag[t * W.rows + r] = s;
    }
  }
  return mag;
}

/**
 * |got - want| <= 1e-5·|want| + 1e-6·Σ|w·x|: 1e-5 relative, plus an absolute term for the
 * cancellation in rows whose dot is near zero, scaled by the row's own magnitude.
 */
function assertClose(got: Float32Array, want: Float32Array, mag: Float64Array | null, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!, b = want[i]!;
    if (Number.isNaN(b)) {
      assert.ok(Number.isNaN(a), `${what}[${i}]: want NaN, got ${a}`);
      continue;
    }
    const tol = 1e-5 * Math.abs(b) + 1e-6 * (mag ? mag[i]! : 0) + 1e-30;
    if (!(Math.abs(a - b) <= tol)) assert.fail(`${what}[${i}]: wasm ${a} vs ref ${b} (|diff| ${Math.abs(a - b)} > tol ${tol})`);
  }
}

/** these tests pin the exact (f32-activation) kernels; the 8-bit path has its own (kernels-q8.test.ts) */
const EXACT = { activations: 'f32', threads: 1 } as const;
const kernels = createWasmKernels(EXACT);

/** ragged shapes per type: cols a whole number of blocks (any count for the float types) */
function shapes(q: QuantInfo, rnd: () => number): Array<[number, number]> {
  const rowsList = [1, 3, 5, 7, 13, 17, 31];
  const out: Array<[number, number]> = [];
  for (const rows of rowsList) {
    let cols: number;
    if (q.blockSize === 1) cols = 1 + ((rnd() * 70) | 0);
    else if (q.blockSize === 32) cols = 32 * (1 + ((rnd() * 6) | 0));
    else cols = 256 * (1 + ((rnd() * 3) | 0));
    out.push([rows, cols]);
  }
  if (q.blockSize === 1) out.push([9, 8], [4, 16], [6, 3]);
  return out;
}

test('the wasm kernels compute the types the real models use', () => {
  for (const name of ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K']) {
    const q = allQuantTypes().find((t) => t.name === name)!;
    assert.ok(kernels.supports(q.id), `${name} should run in wasm`);
  }
  assert.equal(kernels.supports(GGMLType.Q2_K), false);
  assert.equal(kernels.supports(GGMLType.Q3_K), false);
});

test('wasm decoder is bit-exact against the reference dequantizer', () => {
  const rnd = mulberry32(7);
  for (const q of allQuantTypes()) {
    if (!kernels.supports(q.id)) continue;
    for (const [rows, cols] of shapes(q, rnd)) {
      const W = makeTensor(kernels, q, rows, cols, rnd, (rnd() * 16) | 0);
      const got = new Float32Array(cols);
      const want = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        kernels.dequantizeRow(W, r, got);
        dequantize(q.id, W.data, W.offset + r * W.rowBytes, want, 0, cols);
        const gb = new Uint32Array(got.buffer), wb = new Uint32Array(want.buffer);
        for (let c = 0; c < cols; c++) {
          if (gb[c] !== wb[c]) assert.fail(`${W.name} row ${r} col ${c}: wasm ${got[c]} vs ref ${want[c]}`);
        }
      }
    }
  }
});

for (const q of allQuantTypes()) {
  test(`matvec ${q.name}: wasm == ref (all rows, selected rows, selected inputs, both)`, () => {
    const rnd = mulberry32(1000 + q.id);
    for (const [rows, cols] of shapes(q, rnd)) {
      const W = makeTensor(kernels, q, rows, cols, rnd, (rnd() * 16) | 0);
      const x = randVec(cols, rnd);
      const variants: Array<[string, Selection | null, Selection | null]> = [
        ['dense', null, null],
        ['rows', randSelection(rows, 0.5, rnd), null],
        ['inputs', null, randSelection(cols, 0.6, rnd)],
        ['rows+inputs', randSelection(rows, 0.7, rnd), randSelection(cols, 0.3, rnd)],
        ['no rows', { idx: new Int32Array(0), n: 0 }, null],
      ];
      for (const [label, rowSel, inSel] of variants) {
        const want = new Float32Array(rows).fill(7);
        const got = new Float32Array(rows).fill(7);
        refKernels.matvec(W, x, want, { rows: rowSel, inputs: inSel });
        kernels.matvec(W, x, got, { rows: rowSel, inputs: inSel });
        let xm = x;
        if (inSel) {
          xm = new Float32Array(cols);
          for (let i = 0; i < inSel.n; i++) xm[inSel.idx[i]!] = x[inSel.idx[i]!]!;
        }
        assertClose(got, want, magnitudes(W, xm, 1), `${W.name} ${label}`);
      }
    }
  });

  test(`matmul ${q.name}: wasm == ref for n = 1..9`, () => {
    const rnd = mulberry32(2000 + q.id);
    const list = shapes(q, rnd);
    for (let n = 1; n <= 9; n++) {
      const [rows, cols] = list[n % list.length]!;
      const W = makeTensor(kernels, q, rows, cols, rnd, (rnd() * 16) | 0);
      const X = randVec(n * cols, rnd);
      const want = new Float32Array(n * rows);
      const got = new Float32Array(n * rows);
      refKernels.matmul(W, X, n, want);
      kernels.matmul(W, X, n, got);
      assertClose(got, want, magnitudes(W, X, n), `${W.name} n=${n}`);
    }
  });
}

test('matmul with Out larger than the scratch budget works in token chunks', () => {
  const rnd = mulberry32(99);
  const q = quantInfo(GGMLType.Q8_0)!;
  const W = makeTensor(kernels, q, 70000, 32, rnd); // (32 + 70000)·4 B per token: 14 tokens per chunk
  const n = 19;
  const X = randVec(n * 32, rnd);
  const want = new Float32Array(n * W.rows);
  const got = new Float32Array(n * W.rows);
  refKernels.matmul(W, X, n, want);
  kernels.matmul(W, X, n, got);
  assertClose(got, want, magnitudes(W, X, n), W.name);
});

test('tensors outside the kernel memory are refused with a clear error', () => {
  const q = quantInfo(GGMLType.Q4_0)!;
  const W: QTensor = { name: 'outside', type: q, rows: 2, cols: 32, data: new Uint8Array(36), offset: 0, rowBytes: 18 };
  assert.throws(() => kernels.matvec(W, new Float32Array(32), new Float32Array(2)), /not in this kernel instance's WebAssembly memory/);
  const other = createWasmKernels({ ...EXACT, maxMemoryBytes: 1 << 20 });
  const W2: QTensor = { ...W, data: other.alloc(36) };
  assert.throws(() => kernels.matmul(W2, new Float32Array(32), 1, new Float32Array(2)), /not in this kernel instance's/);
  assert.throws(() => other.alloc(2 << 20), /out of memory/);
});

test('views from alloc() stay valid while the memory grows', () => {
  const k = createWasmKernels(EXACT);
  const q = quantInfo(GGMLType.Q4_0)!;
  const rnd = mulberry32(5);
  const W = makeTensor(k, q, 8, 64, rnd);
  const x = randVec(64, rnd);
  const before = new Float32Array(8);
  k.matvec(W, x, before);
  const big = k.alloc(8 << 20); // grows the memory
  assert.equal(big.length, 8 << 20);
  assert.ok(W.data.length > 0);
  const after = new Float32Array(8);
  k.matvec(W, x, after);
  assert.deepEqual(after, before);
  const W2 = makeTensor(k, q, 8, 64, rnd); // on the new buffer object
  k.matvec(W2, x, after);
  const want = new Float32Array(8);
  refKernels.matvec(W2, x, want);
  assertClose(after, want, magnitudes(W2, x, 1), 'after growth');
});

/** A real tensor through wasm and the reference: a matvec, and a matmul of n tokens over its first maxRows rows. */
function checkRealTensor(k: WasmKernels, W: QTensor, label: string, rnd: () => number, n: number, maxRows: number): void {
  const x = randVec(W.cols, rnd);
  const want = new Float32Array(W.rows);
  const got = new Float32Array(W.rows);
  refKernels.matvec(W, x, want);
  k.matvec(W, x, got);
  assertClose(got, want, magnitudes(W, x, 1), `${label} matvec`);
  const Wm = { ...W, rows: Math.min(W.rows, maxRows) };
  const X = randVec(n * W.cols, rnd);
  const wantM = new Float32Array(n * Wm.rows);
  const gotM = new Float32Array(n * Wm.rows);
  refKernels.matmul(Wm, X, n, wantM);
  k.matmul(Wm, X, n, gotM);
  assertClose(gotM, wantM, magnitudes(Wm, X, n), `${label} matmul`);
}

test('real model: SmolLM2-135M tensors read into kernel memory, wasm == ref', () => {
  const h = readGGUFHeader(catalogModel('smollm2-135m-instruct'));
  const k = createWasmKernels(EXACT);
  const data = readGGUFData(h, k.alloc(h.dataSize));
  const rnd = mulberry32(11);
  const seen = new Set<number>();
  const checked: string[] = [];
  for (const t of h.tensors) {
    if (t.dims.length !== 2) continue;
    // each type once, plus the layer-0 FFN and attention projections
    if (seen.has(t.type.id) && !/^blk\.0\.(ffn_gate|ffn_down|attn_q)\./.test(t.name)) continue;
    seen.add(t.type.id);
    const W: QTensor = {
      name: t.name, type: t.type, cols: t.dims[0]!, rows: Math.min(t.dims[1]!, 2048),
      data, offset: t.offset, rowBytes: (t.dims[0]! / t.type.blockSize) * t.type.blockBytes,
    };
    checkRealTensor(k, W, `${t.name} (${t.type.name})`, rnd, 5, 256);
    checked.push(`${t.name}:${t.type.name}`);
  }
  assert.ok(checked.length >= 3, `checked ${checked.join(', ')}`);
});

test('real model: Qwen2.5-Coder-0.5B Q5_0 / Q4_K / Q6_K / Q8_0 tensors, wasm == ref', () => {
  const h = readGGUFHeader(catalogModel('qwen2.5-coder-0.5b-instruct'));
  const k = createWasmKernels(EXACT);
  const rnd = mulberry32(12);
  const fd = openSync(h.path, 'r');
  try {
    const types = new Set<string>();
    for (const name of ['blk.0.ffn_gate.weight', 'blk.0.ffn_down.weight', 'blk.11.ffn_down.weight', 'blk.0.attn_v.weight']) {
      const t = h.tensorsByName.get(name);
      assert.ok(t, `missing ${name}`);
      // just this tensor's bytes, read into kernel memory
      const data = k.alloc(t.nBytes);
      assert.equal(readSync(fd, data, 0, t.nBytes, h.dataOffset + t.offset), t.nBytes);
      const W: QTensor = {
        name, type: t.type, cols: t.dims[0]!, rows: t.dims[1]!, data, offset: 0,
        rowBytes: (t.dims[0]! / t.type.blockSize) * t.type.blockBytes,
      };
      types.add(t.type.name);
      checkRealTensor(k, W, `${name} (${t.type.name})`, rnd, 3, 512);
    }
    assert.deepEqual([...types].sort(), ['Q4_K', 'Q5_0', 'Q6_K', 'Q8_0']);
  } finally {
    closeSync(fd);
  }
});

// ------------------------------------------------------------------ attention

/** |got - want| <= 1e-5·|want| + 1e-6 */
function assertCloseAbs(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length);
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!, b = want[i]!;
    const tol = 1e-5 * Math.abs(b) + 1e-6;
    if (!(Math.abs(a - b) <= tol)) assert.fail(`${what}[${i}]: wasm ${a} vs ref ${b} (|diff| ${Math.abs(a - b)} > tol ${tol})`);
  }
}

/** Uniform in [-a, a). */
function uniform(n: number, a: number, rnd: () => number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (rnd() * 2 - 1) * a;
  return v;
}

/** A Float32Array of n random values in kernel memory, `skew` floats past a 64-byte boundary. */
function memF32(k: WasmKernels, n: number, rnd: () => number, skew = 0): Float32Array {
  const u = k.alloc((n + skew) * 4);
  const f = new Float32Array(u.buffer, u.byteOffset + skew * 4, n);
  f.set(uniform(n, 1, rnd));
  return f;
}

interface AttnCase {
  nHeads: number; nKvHeads: number; headDim: number; headDimV: number; n: number; start: number;
  heads: Selection | null; qScale: number;
}

/** Runs one case through wasm and ref (same inputs; out pre-filled with garbage) and compares. */
function checkAttention(k: WasmKernels, c: AttnCase, rnd: () => number): void {
  const { nHeads, nKvHeads, headDim, headDimV, n, start, heads } = c;
  const ctx = start + n + ((rnd() * 3) | 0); // positions past the span are never read
  const K = memF32(k, ctx * nKvHeads * headDim, rnd, (rnd() * 5) | 0);
  const V = memF32(k, ctx * nKvHeads * headDimV, rnd, (rnd() * 5) | 0);
  const qOffset = (rnd() * 7) | 0, outOffset = (rnd() * 7) | 0;
  const q = new Float32Array(qOffset + nHeads * headDim + 3);
  q.set(uniform(nHeads * headDim, c.qScale, rnd), qOffset);
  const outLen = outOffset + nHeads * headDimV + 2;
  const want = new Float32Array(outLen).fill(7);
  const got = new Float32Array(outLen).fill(7);
  const args: Omit<AttentionArgs, 'out'> = {
    q, qOffset, k: K, v: V, start, n, nHeads, nKvHeads, headDim, headDimV, scale: 1 / Math.sqrt(headDim), outOffset, heads,
  };
  refKernels.attention({ ...args, out: want });
  k.attention({ ...args, out: got });
  const what = `attention ${nHeads}/${nKvHeads} heads, headDim ${headDim}/${headDimV}, n ${n}, start ${start}, `
    + `q·${c.qScale}, heads ${heads ? `[${heads.idx.subarray(0, heads.n).join(',')}]` : 'all'}`;
  assertCloseAbs(got, want, what);
}

test('attention: wasm == ref (grouped-query heads, head dims 8/64/256, n up to 300, start > 0, head selections)', () => {
  const k = createWasmKernels(EXACT);
  const rnd = mulberry32(31);
  let cases = 0;
  for (const [nHeads, nKvHeads] of [[1, 1], [4, 1], [8, 4], [9, 3], [14, 2]] as const) {
    for (const headDim of [8, 64, 256]) {
      for (const n of [1, 2, 7, 33, 300]) {
        for (const start of [0, 1 + ((rnd() * 40) | 0)]) {
          for (const sel of [false, true]) {
            const heads = sel ? randSelection(nHeads, 0.5, rnd) : null;
            // flat and peaked softmaxes: scores ~ ±√headDim/3 and 4× that
            const qScale = cases % 2 === 0 ? 1 : 4;
            checkAttention(k, { nHeads, nKvHeads, headDim, headDimV: headDim, n, start, heads, qScale }, rnd);
            cases++;
          }
        }
      }
    }
  }
  assert.equal(cases, 300);
});

test('attention: ragged head sizes (scalar tails), headDimV != headDim, empty and full head selections', () => {
  const k = createWasmKernels(EXACT);
  const rnd = mulberry32(32);
  for (const [headDim, headDimV] of [[1, 1], [3, 5], [6, 6], [13, 7], [20, 12], [36, 36], [64, 32], [4, 128]] as const) {
    for (const n of [1, 3, 4, 5, 17, 64]) {
      checkAttention(k, { nHeads: 6, nKvHeads: 2, headDim, headDimV, n, start: n % 5, heads: null, qScale: 2 }, rnd);
      checkAttention(k, { nHeads: 6, nKvHeads: 3, headDim, headDimV, n, start: 2, heads: randSelection(6, 0.4, rnd), qScale: 2 }, rnd);
    }
  }
  const all: Selection = { idx: Int32Array.from([5, 0, 3, 1, 2, 4]), n: 6 };
  checkAttention(k, { nHeads: 6, nKvHeads: 2, headDim: 64, headDimV: 64, n: 40, start: 3, heads: all, qScale: 1 }, rnd);
  checkAttention(k, { nHeads: 6, nKvHeads: 2, headDim: 64, headDimV: 64, n: 40, start: 3, heads: { idx: new Int32Array(4), n: 0 }, qScale: 1 }, rnd);
  // extreme scores: a softmax that is one-hot to f32 precision, exp of scores far below the max
  checkAttention(k, { nHeads: 4, nKvHeads: 2, headDim: 64, headDimV: 64, n: 50, start: 0, heads: null, qScale: 40 }, rnd);
});

test('attention: the heads of a kv head attended together give each head its lone sums, bit for bit, on 1 and 2 threads', () => {
  const rnd = mulberry32(33);
  for (const threads of [1, 2]) {
    const k = createWasmKernels({ ...EXACT, threads });
    try {
      for (const [nHeads, nKvHeads, headDim, n] of [[4, 1, 256, 37], [14, 2, 64, 130], [9, 3, 64, 5], [8, 8, 32, 9], [6, 2, 20, 3]] as const) {
        const K = memF32(k, (n + 1) * nKvHeads * headDim, rnd), V = memF32(k, (n + 1) * nKvHeads * headDim, rnd);
        // a batch of query positions (whole groups per unit) and one position (sub-groups)
        for (const T of [1, 5]) {
          const q = uniform(T * nHeads * headDim, 2, rnd);
          const base = { q, k: K, v: V, start: 1, nHeads, nKvHeads, headDim, headDimV: headDim, scale: 1 / Math.sqrt(headDim) };
          const all: Selection = { idx: Int32Array.from({ length: nHeads }, (_, h) => h), n: nHeads };
          const grouped = new Float32Array(T * nHeads * headDim), alone = new Float32Array(T * nHeads * headDim);
          const list = (out: Float32Array, heads: Selection | null): AttentionArgs[] => Array.from({ length: T }, (_, t) =>
            ({ ...base, qOffset: t * nHeads * headDim, n: n - t, out, outOffset: t * nHeads * headDim, heads }));
          k.attentions(list(grouped, null));
          k.attentions(list(alone, all));
          // (a decode row over many positions is split over them instead: the next test)
          if (splitChunk(n, T, nKvHeads)) continue;
          assert.deepEqual(grouped, alone, `${nHeads}/${nKvHeads} heads, ${T} positions, ${threads} threads`);
        }
      }
    } finally {
      k.close();
    }
  }
});

test('attention split over chunks of positions (decode rows): == reference, the same bits on 1 and 2 threads', () => {
  // a few rows over many positions are split; many rows, or few positions, are not
  assert.equal(splitChunk(64, 1, 3), 0);
  assert.equal(splitChunk(65, 1, 3), 64);
  assert.equal(splitChunk(2000, 1, 1), 252);
  assert.equal(splitChunk(2000, 5, 1), 0);
  const rnd = mulberry32(34);
  const ks = [1, 2].map((threads) => createWasmKernels({ ...EXACT, threads }));
  try {
    for (const [nHeads, nKvHeads, headDim, headDimV] of [[4, 1, 256, 256], [14, 2, 64, 64], [9, 3, 64, 64], [8, 8, 32, 32], [6, 2, 20, 12]] as const) {
      for (const [n, T] of [[65, 1], [130, 1], [511, 2], [1500, 1], [700, 4]] as const) {
        const ctx = n + 2;
        const K = memF32(ks[0]!, ctx * nKvHeads * headDim, rnd), V = memF32(ks[0]!, ctx * nKvHeads * headDimV, rnd);
        const q = uniform(T * nHeads * headDim, 3, rnd);
        const base = { q, k: K, v: V, start: 1, nHeads, nKvHeads, headDim, headDimV, scale: 1 / Math.sqrt(headDim), heads: null };
        const list = (out: Float32Array): AttentionArgs[] => Array.from({ length: T }, (_, t) =>
          ({ ...base, qOffset: t * nHeads * headDim, n: n - 3 * t, out, outOffset: t * nHeads * headDimV }));
        const want = new Float32Array(T * nHeads * headDimV);
        for (const a of list(want)) refKernels.attention(a);
        const outs = ks.map((k) => {
          // the caches in the first instance's memory: copied into the second's
          const Kk = k === ks[0] ? K : memF32(k, K.length, rnd), Vk = k === ks[0] ? V : memF32(k, V.length, rnd);
          if (k !== ks[0]) { Kk.set(K); Vk.set(V); }
          const out = new Float32Array(T * nHeads * headDimV);
          k.attentions(list(out).map((a) => ({ ...a, k: Kk, v: Vk })));
          return out;
        });
        const what = `${nHeads}/${nKvHeads} heads, dims ${headDim}/${headDimV}, n ${n}, ${T} rows`;
        assertCloseAbs(outs[0]!, want, what);
        assert.deepEqual(outs[1], outs[0], `${what}: 2 threads differ from 1`);
      }
    }
  } finally {
    for (const k of ks) k.close();
  }
});

test('attention: heads per unit — a whole group where every thread gets a fair share', () => {
  assert.equal(headsPerUnit(4, 4, 32, 2), 4);  // Gemma prefill
  assert.equal(headsPerUnit(4, 4, 1, 2), 2);   // Gemma decode: two units of two heads
  assert.equal(headsPerUnit(4, 4, 1, 1), 4);
  assert.equal(headsPerUnit(7, 14, 1, 2), 7);  // Qwen decode: one kv head per thread
  assert.equal(headsPerUnit(3, 9, 1, 2), 1);   // SmolLM2 decode: 3 units would leave one thread twice the work
  assert.equal(headsPerUnit(3, 9, 32, 2), 3);
  assert.equal(headsPerUnit(1, 8, 1, 2), 1);
});

test('attention: a cache outside the kernel memory falls back to the reference; bad spans are refused', () => {
  const k = createWasmKernels(EXACT);
  const rnd = mulberry32(33);
  const [nHeads, nKvHeads, headDim, n] = [4, 2, 16, 9];
  const args = {
    q: uniform(nHeads * headDim, 1, rnd), qOffset: 0, k: uniform(n * nKvHeads * headDim, 1, rnd), v: uniform(n * nKvHeads * headDim, 1, rnd),
    start: 0, n, nHeads, nKvHeads, headDim, headDimV: headDim, scale: 0.25, outOffset: 0, heads: null,
  };
  const want = new Float32Array(nHeads * headDim);
  const got = new Float32Array(nHeads * headDim);
  refKernels.attention({ ...args, out: want });
  k.attention({ ...args, out: got });
  assert.deepEqual(got, want);
  const K = memF32(k, n * nKvHeads * headDim, rnd), V = memF32(k, n * nKvHeads * headDim, rnd);
  assert.throws(() => k.attention({ ...args, k: K, v: V, start: 1, out: got }), RangeError);
  assert.throws(() => k.attention({ ...args, k: K, v: V, heads: { idx: Int32Array.from([4]), n: 1 }, out: got }), RangeError);
});

test('KVCache on the kernels\' allocator: aligned views in kernel memory that wasm attention reads in place', () => {
  const k = createWasmKernels(EXACT);
  const cfg = { nLayers: 3, nHeads: 14, nKvHeads: 2, headDim: 64, headDimV: 64 } as ModelConfig;
  const ctx = 40;
  const kv = new KVCache(cfg, ctx, (b) => k.alloc(b));
  assert.equal(kv.bytes, 3 * 2 * ctx * 128 * 4);
  const rnd = mulberry32(34);
  for (const a of [...kv.k, ...kv.v]) {
    assert.equal(a.length, ctx * 128);
    assert.equal(a.byteOffset % 4, 0);
    assert.ok(a.every((x) => x === 0));
    a.set(uniform(a.length, 1, rnd));
  }
  // the layers do not overlap
  const spans = [...kv.k, ...kv.v].map((a) => [a.byteOffset, a.byteOffset + a.byteLength] as const).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i]![0] >= spans[i - 1]![1]);
  const q = uniform(14 * 64, 2, rnd);
  for (let l = 0; l < 3; l++) {
    const args = { q, qOffset: 0, k: kv.k[l]!, v: kv.v[l]!, start: 5, n: 30, nHeads: 14, nKvHeads: 2, headDim: 64, headDimV: 64, scale: 0.125, outOffset: 0, heads: null };
    const want = new Float32Array(14 * 64), got = new Float32Array(14 * 64);
    refKernels.attention({ ...args, out: want });
    k.attention({ ...args, out: got });
    assertCloseAbs(got, want, `layer ${l}`);
  }
  // an allocator that hands out unaligned views still gets aligned Float32Arrays
  const pool = new Uint8Array(1 << 16);
  let top = 1;
  const odd = new KVCache(cfg, 4, (b) => { const u = pool.subarray(top, top + b); top += b + 1; return u; });
  for (const a of [...odd.k, ...odd.v]) {
    assert.equal(a.byteOffset % 4, 0);
    assert.equal(a.length, 4 * 128);
  }
  // without an allocator: ordinary arrays (the wasm kernels then use the reference attention)
  const plain = new KVCache(cfg, 4);
  assert.equal(plain.k[0]!.buffer.byteLength, 4 * 128 * 4);
});
