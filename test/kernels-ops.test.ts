// The element-wise operations in WebAssembly SIMD against the TypeScript reference: RMSNorm,
// SiLU, GELU, products, sums and RoPE, on arrays in the kernels' memory, ragged lengths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmKernels } from '../src/kernels/wasm/index.js';
import { refOps } from '../src/kernels/ref/ops.js';
import { f32On } from '../src/model/kv-cache.js';
import { mulberry32 } from './helpers.js';

const k = createWasmKernels({ threads: 1 });
const inMem = (n: number): Float32Array => f32On(k.alloc.bind(k), n);
const rnd = mulberry32(77);
function fill(a: Float32Array, scale = 1): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = (rnd() * 2 - 1) * scale * (rnd() < 0.05 ? 30 : 1);
  return a;
}
function close(got: Float32Array, want: Float32Array, rel: number, abs: number, what: string): void {
  for (let i = 0; i < want.length; i++) {
    const a = got[i]!, b = want[i]!;
    if (!(Math.abs(a - b) <= rel * Math.abs(b) + abs)) assert.fail(`${what}[${i}]: wasm ${a} vs ref ${b}`);
  }
}
const SIZES = [1, 3, 4, 7, 64, 129, 576, 1537];

test('rmsnorm: wasm == ref (ragged sizes, offsets, in place)', () => {
  for (const n of SIZES) {
    const x = fill(inMem(n + 5)), w = fill(new Float32Array(n));
    const want = new Float32Array(n + 5), got = inMem(n + 5);
    refOps.rmsnorm(want, 2, x, 3, w, n, 1e-6);
    k.rmsnorm(got, 2, x, 3, w, n, 1e-6);
    close(got.subarray(2, 2 + n), want.subarray(2, 2 + n), 1e-6, 1e-7, `rmsnorm n=${n}`);
    // in place
    const y = inMem(n); y.set(x.subarray(0, n));
    const yr = new Float32Array(x.subarray(0, n));
    k.rmsnorm(y, 0, y, 0, w, n, 1e-5);
    refOps.rmsnorm(yr, 0, yr, 0, w, n, 1e-5);
    close(y, yr, 1e-6, 1e-7, `rmsnorm in place n=${n}`);
  }
});

test('silu and gelu: wasm == ref, also for large |x| (no overflow)', () => {
  for (const act of ['silu', 'gelu'] as const) {
    for (const n of SIZES) {
      const x = fill(inMem(n), 8);
      if (n > 4) { x[0] = 100; x[1] = -100; x[2] = 0; x[3] = -0.5; }
      const want = new Float32Array(x);
      refOps.activate(want, 0, n, act);
      k.activate(x, 0, n, act);
      close(x, want, 2e-6, 1e-7, `${act} n=${n}`);
    }
  }
});

test('mul and add: wasm == ref', () => {
  for (const n of SIZES) {
    const a = fill(inMem(n + 1)), b = fill(inMem(n + 2));
    const wm = new Float32Array(a), wa = new Float32Array(a);
    refOps.mul(wm, 1, b, 2, n);
    refOps.add(wa, 1, b, 2, n);
    const gm = inMem(n + 1); gm.set(a);
    const ga = inMem(n + 1); ga.set(a);
    k.mul(gm, 1, b, 2, n);
    k.add(ga, 1, b, 2, n);
    assert.deepEqual(gm, wm);
    assert.deepEqual(ga, wa);
  }
});

test('silu, gelu and mul of a batch on two threads: the same bits as on one (sizes around the 4096-element units)', () => {
  const k2 = createWasmKernels({ threads: 2 });
  try {
    const rnd = mulberry32(77);
    for (const n of [8191, 8192, 8193, 3 * 4096 + 5, 40000]) {
      for (const act of ['silu', 'gelu'] as const) {
        const x = Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * 6);
        const one = f32On(k.alloc.bind(k), n), two = f32On(k2.alloc.bind(k2), n);
        one.set(x); two.set(x);
        k.activate(one, 0, n, act);
        k2.activate(two, 0, n, act);
        assert.deepEqual(two, one, `${act} n ${n}`);
        const b1 = f32On(k.alloc.bind(k), n), b2 = f32On(k2.alloc.bind(k2), n);
        for (let i = 0; i < n; i++) b1[i] = b2[i] = rnd() * 2 - 1;
        k.mul(one, 0, b1, 0, n);
        k2.mul(two, 0, b2, 0, n);
        assert.deepEqual(two, one, `mul n ${n}`);
      }
    }
  } finally {
    k2.close();
  }
});

test('rope: wasm == ref, neox and interleaved pairs, partial rotation', () => {
  for (const neox of [true, false]) {
    for (const [nHeads, headDim, dims] of [[9, 64, 64], [2, 128, 128], [3, 256, 128], [1, 10, 6]] as const) {
      const cs = inMem(dims);
      for (let i = 0; i < dims / 2; i++) {
        const th = (17 * 1.3) / Math.pow(10000, (2 * i) / dims);
        cs[i] = Math.cos(th);
        cs[dims / 2 + i] = Math.sin(th);
      }
      const x = fill(inMem(nHeads * headDim + 3));
      const want = new Float32Array(x);
      refOps.rope(want, 3, nHeads, headDim, dims, cs, neox);
      k.rope(x, 3, nHeads, headDim, dims, cs, neox);
      close(x, want, 1e-6, 1e-6, `rope neox=${neox} ${nHeads}x${headDim}/${dims}`);
    }
  }
});

test('element-wise ops on arrays outside the kernel memory fall back to the reference', () => {
  const x = fill(new Float32Array(10)), want = new Float32Array(x);
  k.activate(x, 0, 10, 'silu');
  refOps.activate(want, 0, 10, 'silu');
  assert.deepEqual(x, want);
});

test('keepAbove: wasm == ref exactly (ragged sizes, with and without a scale, thresholds at data values, x outside the memory)', () => {
  for (const n of SIZES) {
    const x = fill(inMem(n)), scale = fill(new Float32Array(n)).map(Math.abs);
    const ts = [0, 0.3, Math.abs(x[n >> 1]!), Math.fround(Math.abs(x[0]!) * scale[0]!), Math.abs(x[0]!) * 1.0000001, 1e9];
    for (const t of ts) {
      for (const s of [null, scale]) {
        const want = new Int32Array(n), got = new Int32Array(n);
        const kw = refOps.keepAbove(x, t, s, want);
        const kg = k.keepAbove(x, t, s, got);
        assert.equal(kg, kw, `keepAbove n=${n} t=${t} scale=${!!s}: count`);
        assert.deepEqual(got.subarray(0, kg), want.subarray(0, kw), `keepAbove n=${n} t=${t} scale=${!!s}`);
        // the reference's meaning: |x|·scale (rounded to f32) > t, ascending
        const direct: number[] = [];
        for (let j = 0; j < n; j++) if ((s ? Math.fround(Math.abs(x[j]!) * s[j]!) : Math.abs(x[j]!)) > t) direct.push(j);
        assert.deepEqual(Array.from(want.subarray(0, kw)), direct);
      }
    }
    const outside = Float32Array.from(x), a = new Int32Array(n), b = new Int32Array(n);
    assert.equal(k.keepAbove(outside, 0.3, null, a), refOps.keepAbove(x, 0.3, null, b));
    assert.deepEqual(a, b);
  }
});
