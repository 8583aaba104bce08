// The sparse output layer (src/sparsity/head.ts, asm/screen.ts): the screen kernels (both stages)
// and the wasm screen builder against their TypeScript references (ragged sizes, both SIMD builds,
// one and two threads); the margin and sampling bounds, with one stage and two; greedy tokens equal
// to the dense head's on stories260K and on a real model; the agreement meter that `perplexity`
// and `eval --sparse-head` report.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createWasmKernels, relaxedSimdAvailable, type WasmKernels } from '../src/kernels/wasm/index.js';
import { refKernels } from '../src/kernels/ref/index.js';
import { GGMLType, quantInfo } from '../src/quant/types.js';
import { loadModel, type Model } from '../src/model/load.js';
import { Session } from '../src/generate/session.js';
import { HeadAgreementMeter } from '../src/eval/head-agreement.js';
import { perplexity } from '../src/eval/perplexity.js';
import { argmax, argmaxIn } from '../src/generate/sampler.js';
import {
  buildScreen, quantizeScreen, rowErrorNorms, rowNorms, scaledNorm, scaledNorms, screenActivation, screenBytes, screenMatvecRef, screenRow, secondNorms, SparseHead, type Screen,
} from '../src/sparsity/head.js';
import { screenOrder, splitScreen } from '../src/kernels/screen-layout.js';
import { buildSparseHead, measureScreenError } from '../src/sparsity/head-model.js';
import { catalogModel, mulberry32, sharedPath } from './helpers.js';
import { makeTensor, randVec } from './kernel-helpers.js';

const FLAVOURS = relaxedSimdAvailable() ? (['plain', 'relaxed'] as const) : (['plain'] as const);
const instances: WasmKernels[] = [];
function kernels(simd: 'plain' | 'relaxed', threads: number): WasmKernels {
  const k = createWasmKernels({ simd, threads, activations: 'q8' });
  instances.push(k);
  return k;
}
test.after(() => { for (const k of instances) k.close(); });

// hidden sizes are multiples of 64; an odd number of 64-blocks (576, 64) takes the kernel's single-block tail
const SHAPES: [number, number][] = [[1, 64], [3, 128], [5, 192], [13, 640], [37, 576], [130, 896]];

for (const simd of FLAVOURS) {
  for (const threads of [1, 2]) {
    test(`screen mat-vec (${simd}, ${threads} thread${threads > 1 ? 's' : ''}) equals its reference on ragged shapes`, () => {
      const k = kernels(simd, threads);
      const rnd = mulberry32(11 + threads);
      for (const type of [GGMLType.Q8_0, GGMLType.F32, GGMLType.Q4_K]) {
        for (const [rows, cols] of SHAPES) {
          if (type === GGMLType.Q4_K && cols % 256 !== 0) continue;
          const W = makeTensor(k, quantInfo(type)!, rows, cols, rnd, 3);
          // the wasm builder and the TypeScript one give the same bytes, columns in energy order
          const energy = Float64Array.from({ length: cols }, () => rnd() * 4);
          const S = buildScreen(k, W, k.alloc(screenBytes(rows, cols)), true, energy);
          const R = quantizeScreen(W, new Uint8Array(screenBytes(rows, cols)), true, energy);
          assert.deepEqual(S.data, R.data, `${W.name}: wasm-built screen differs from the reference`);
          const x = randVec(cols, rnd);
          const u = k.alloc(4 * 4 * S.groups);
          const got = new Float32Array(u.buffer, u.byteOffset, 4 * S.groups);
          const best = k.screenMatvec(S, x, got, rows);
          const want = new Float64Array(rows);
          screenMatvecRef(S, x, want);
          // the best screened row among the real ones (padding rows score 0 and must not win)
          let b = 0;
          for (let r = 1; r < rows; r++) if (got[r]! > got[b]!) b = r;
          assert.equal(best, b, `${W.name}: best screened row`);
          const neg = new Float32Array(cols).map((_, i) => -Math.abs(x[i]!));
          if (type === GGMLType.F32) {
            // all scores negative (a matrix of positive entries): still a real row, never a padding one
            const P = makeTensor(k, quantInfo(type)!, rows, cols, rnd, 3);
            const pv = new DataView(P.data.buffer, P.data.byteOffset + P.offset, rows * cols * 4);
            for (let i = 0; i < rows * cols; i++) pv.setFloat32(4 * i, Math.abs(pv.getFloat32(4 * i, true)) + 0.01, true);
            const SP = buildScreen(k, P, k.alloc(screenBytes(rows, cols)));
            const u2 = k.alloc(4 * 4 * SP.groups);
            const got2 = new Float32Array(u2.buffer, u2.byteOffset, 4 * SP.groups);
            const bp = k.screenMatvec(SP, neg, got2, rows);
            let wb = 0;
            for (let r = 1; r < rows; r++) if (got2[r]! > got2[wb]!) wb = r;
            assert.ok(got2[wb]! < 0, 'the scores are negative');
            assert.equal(bp, wb, `${W.name}: best row of negative scores`);
          }
          // the integer sums are exact; tolerance: the final f32 products (and, split, their sum)
          const a = screenActivation(S, x);
          const row = new Float32Array(cols);
          const mags: Float64Array[] = [];
          for (let r = 0; r < rows; r++) {
            screenRow(S, r, row);
            // cum[w] = Σ|terms| over the first w blocks
            const cum = new Float64Array(S.nb + 1);
            for (let c = 0; c < cols; c++) cum[(c >> 6) + 1] += Math.abs(row[c]! * a.q[c]! * a.d);
            for (let w = 1; w <= S.nb; w++) cum[w] += cum[w - 1]!;
            mags.push(cum);
            assert.ok(Math.abs(got[r]! - want[r]!) <= 1e-5 * cum[S.nb]! + 1e-30, `${W.name} row ${r}: wasm ${got[r]} ref ${want[r]}`);
          }
          // the first stage over fewer blocks (the width chooser's view of a one-stage screen)
          for (let w = 1; w < S.nb; w++) {
            k.screenMatvec(S, x, got, rows, w);
            screenMatvecRef(S, x, want, 64 * w);
            for (let r = 0; r < rows; r++) assert.ok(Math.abs(got[r]! - want[r]!) <= 1e-5 * mags[r]![w]! + 1e-30, `${W.name} ${w} blocks, row ${r}: wasm ${got[r]} ref ${want[r]}`);
          }
          // split in two stages: the same rows; the first stage, then the second on some groups
          const rowsBefore = Array.from({ length: rows }, (_, r) => { screenRow(S, r, row); return row.slice(); });
          const nb1 = Math.max(1, S.nb - 1 - (rows % 2));
          const T = splitScreen(S, nb1);
          assert.equal(T.nb1, nb1);
          for (let r = 0; r < rows; r++) {
            screenRow(T, r, row);
            assert.deepEqual(row, rowsBefore[r], `${W.name} row ${r}: split changed it`);
          }
          const b1 = k.screenMatvec(T, x, got, rows);
          screenMatvecRef(T, x, want, 64 * nb1);
          for (let r = 0; r < rows; r++) assert.ok(Math.abs(got[r]! - want[r]!) <= 1e-5 * mags[r]![nb1]! + 1e-30, `${W.name} first stage, row ${r}`);
          let bb = 0;
          for (let r = 1; r < rows; r++) if (got[r]! > got[bb]!) bb = r;
          assert.equal(b1, bb);
          const first = got.slice();
          const gu = k.alloc(4 * T.groups);
          const gidx = new Int32Array(gu.buffer, gu.byteOffset, T.groups);
          const listed = Array.from({ length: T.groups }, (_, g) => g).filter((g) => g % 3 !== 1);
          gidx.set(listed);
          k.screenGroups(T, gidx, listed.length, got);
          screenMatvecRef(T, x, want);
          for (let r = 0; r < rows; r++) {
            if (listed.includes(r >> 2)) assert.ok(Math.abs(got[r]! - want[r]!) <= 2e-5 * mags[r]![T.nb]! + 1e-30, `${W.name} both stages, row ${r}: ${got[r]} vs ${want[r]}`);
            else assert.equal(got[r], first[r], `${W.name} row ${r}: its group was not listed`);
          }
        }
      }
    });

    test(`screen second stage (${simd}, ${threads} thread${threads > 1 ? 's' : ''}) over many groups equals its reference`, () => {
      // enough groups that the threads share them
      const k = kernels(simd, threads);
      const rnd = mulberry32(17 + threads);
      const rows = 2050, cols = 192;
      const W = makeTensor(k, quantInfo(GGMLType.Q8_0)!, rows, cols, rnd, 3);
      const energy = Float64Array.from({ length: cols }, () => rnd());
      const S = splitScreen(buildScreen(k, W, k.alloc(screenBytes(rows, cols)), true, energy), 1);
      const x = randVec(cols, rnd);
      const u = k.alloc(4 * 4 * S.groups);
      const got = new Float32Array(u.buffer, u.byteOffset, 4 * S.groups);
      const gu = k.alloc(4 * S.groups);
      const gidx = new Int32Array(gu.buffer, gu.byteOffset, S.groups);
      const listed = Array.from({ length: S.groups }, (_, g) => g).filter((g) => g % 5 !== 2);
      gidx.set(listed);
      k.screenMatvec(S, x, got, rows);
      const first = got.slice();
      k.screenGroups(S, gidx, listed.length, got);
      const want = new Float64Array(rows);
      screenMatvecRef(S, x, want);
      const a = screenActivation(S, x);
      const row = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        if (!listed.includes(r >> 2)) { assert.equal(got[r], first[r]); continue; }
        screenRow(S, r, row);
        let mag = 0;
        for (let c = 0; c < cols; c++) mag += Math.abs(row[c]! * a.q[c]! * a.d);
        assert.ok(Math.abs(got[r]! - want[r]!) <= 2e-5 * mag + 1e-30, `row ${r}: ${got[r]} vs ${want[r]}`);
      }
    });
  }
}

test('screen order: the columns by descending c_j²·energy_j, ties by index; the screen holds them in that order', () => {
  const c = Float32Array.from([1, 2, 1, 0.5, 2]);
  assert.deepEqual(Array.from(screenOrder(c)), [0, 1, 2, 3, 4]);
  // c²·energy = 4, 8, 1, 4, 4
  assert.deepEqual(Array.from(screenOrder(c, [4, 2, 1, 16, 1])), [1, 0, 3, 4, 2]);
  assert.throws(() => screenOrder(c, [1, 2]), /5 columns/);
  const k = kernels('plain', 1);
  const rows = 6, cols = 128;
  const W = makeTensor(k, quantInfo(GGMLType.F32)!, rows, cols, mulberry32(40));
  const energy = Float64Array.from({ length: cols }, (_, j) => (j * 37) % 11);
  const S = quantizeScreen(W, new Uint8Array(screenBytes(rows, cols)), true, energy);
  const plain = quantizeScreen(W, new Uint8Array(screenBytes(rows, cols)), true);
  const e = Array.from(S.perm, (j, i) => S.colScale[i]! ** 2 * energy[j]!);
  for (let i = 1; i < cols; i++) assert.ok(e[i]! <= e[i - 1]!, `column ${i} out of order`);
  const a = new Float32Array(cols), b = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    screenRow(S, r, a);
    screenRow(plain, r, b);
    // the same row scale (it depends on the values, not their order) and the same codes, reordered
    assert.equal(S.rowScale[r], plain.rowScale[r]);
    for (let j = 0; j < cols; j++) assert.equal(a[j], b[S.perm[j]!], `row ${r} column ${j}`);
  }
});

for (const simd of FLAVOURS) {
  test(`screenSelect (${simd}) picks the rows the TypeScript scan picks, on one thread and on two`, () => {
    const rnd = mulberry32(5);
    for (const n of [1, 3, 4, 7, 64, 1001, 20000, 33333]) {
      // enough rows for the threads to share the scan
      const k = kernels(simd, n > 16384 ? 2 : 1);
      const view = (bytes: number): Uint8Array => k.alloc(bytes);
      const su = view(4 * n), ru = view(4 * n), tu = view(4 * n), iu = view(4 * n);
      const s = new Float32Array(su.buffer, su.byteOffset, n), r = new Float32Array(ru.buffer, ru.byteOffset, n);
      const t = new Float32Array(tu.buffer, tu.byteOffset, n);
      const idx = new Int32Array(iu.buffer, iu.byteOffset, n);
      for (let i = 0; i < n; i++) { s[i] = rnd() * 10 - 5; r[i] = rnd(); t[i] = 2 * rnd(); }
      // ties on the threshold: s + κ·r lands exactly on base for some rows
      s[n >> 1] = 2;
      for (const [kappa, base, withR, kappa2] of [[0.7, 2, true, 0], [0, 2, false, 0], [1e-3, 4.9, true, 0], [3, -1, true, 0], [0, 9, false, 0],
        [0.7, 2, true, 0.3], [0, 2, false, 1.1], [0.25, 4.2, true, 0.5]] as const) {
        for (const always of [0, n - 1, n >> 1]) {
          const want: number[] = [];
          for (let i = 0; i < n; i++) {
            let v = s[i]!;
            if (withR) v += kappa * r[i]!;
            if (kappa2) v += kappa2 * t[i]!;
            if (v >= base || i === always) want.push(i);
          }
          const c = k.screenSelect(s, withR ? r : null, n, kappa, base, always, idx, kappa2 ? t : null, kappa2);
          assert.deepEqual(Array.from(idx.subarray(0, c)), want, `n ${n} κ ${kappa} κ2 ${kappa2} base ${base} always ${always}`);
        }
      }
    }
  });
}

test('the screen approximates the matrix: a 4-bit error per element of the column-scaled row', () => {
  const k = kernels('plain', 1);
  const rnd = mulberry32(3);
  const rows = 9, cols = 256;
  const W = makeTensor(k, quantInfo(GGMLType.F32)!, rows, cols, rnd);
  // one column of large entries: the column scales must absorb it
  const dv = new DataView(W.data.buffer, W.data.byteOffset + W.offset);
  for (let r = 0; r < rows; r++) dv.setFloat32(4 * (r * cols + 5), 40 * dv.getFloat32(4 * (r * cols + 5), true), true);
  const S = quantizeScreen(W, new Uint8Array(screenBytes(rows, cols)));
  const colmax = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) colmax[j] = Math.max(colmax[j]!, Math.abs(dv.getFloat32(4 * (r * cols + j), true)));
  for (let j = 0; j < cols; j++) assert.equal(S.colScale[j], Math.fround(Math.pow(colmax[j]!, 0.75)), `column ${j} scale`);
  const row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    screenRow(S, r, row);
    let amax = 0, err = 0;
    for (let j = 0; j < cols; j++) amax = Math.max(amax, Math.abs(dv.getFloat32(4 * (r * cols + j), true) / S.colScale[j]!));
    for (let j = 0; j < cols; j++) err = Math.max(err, Math.abs(dv.getFloat32(4 * (r * cols + j), true) / S.colScale[j]! - row[j]!));
    // at most one step of the row's 16-level code (the searched scales map the largest magnitude to −9…7)
    assert.ok(err <= amax / 6.5 + 1e-6, `row ${r}: error ${err}, amax ${amax}`);
  }
  // the padding rows of the last group are zero
  for (let r = rows; r < 4 * S.groups; r++) assert.equal(S.rowScale[r], 0);
});

/** A head over W whose screen error bound eUnit is given, on the reference kernels. */
function syntheticHead(rows: number, cols: number, eUnit: number, seed: number): { head: SparseHead; k: WasmKernels } {
  const k = kernels('plain', 1);
  const W = makeTensor(k, quantInfo(GGMLType.Q8_0)!, rows, cols, mulberry32(seed));
  const S: Screen = buildScreen(k, W, k.alloc(screenBytes(rows, cols)));
  return { head: new SparseHead(k, W, S, 0, { eUnit, safety: 1 }), k };
}

/** The smallest per-row factor k with |s_i − z_i| ≤ k·r_i·norm on every row: the tightest safe one. */
function tightRowFactor(s: Float32Array, z: Float32Array, R: Float32Array, norm: number): number {
  let k = 0;
  for (let i = 0; i < s.length; i++) k = Math.max(k, Math.abs(s[i]! - z[i]!) / (R[i]! * norm));
  return k;
}

test('margin: with δ at least the screen error, the sparse argmax is the dense argmax; rows outside C are −∞', () => {
  const rows = 301, cols = 128;
  const { head, k } = syntheticHead(rows, cols, 0, 21);
  const R = rowErrorNorms(k, head.W, head.screen);
  const rnd = mulberry32(4);
  const z = new Float32Array(rows);
  const out = new Float32Array(rows);
  for (let trial = 0; trial < 40; trial++) {
    const h = randVec(cols, rnd);
    k.matvec(head.W, h, z);
    const s = head.scores(h).slice(0, rows);
    const nrm = scaledNorm(head.screen, h);
    // the exact largest error of this input, per unit norm: the tightest margin that is still safe
    let e = 0;
    for (let i = 0; i < rows; i++) e = Math.max(e, Math.abs(s[i]! - z[i]!));
    const tight = new SparseHead(k, head.W, head.screen, 0, { eUnit: e / nrm, safety: 1.000001 });
    const n = tight.logits(h, out);
    assert.equal(argmax(out), argmax(z), `trial ${trial}`);
    // per-row margins with the tightest safe factor: the same winner, and never more rows
    const kr = tightRowFactor(s, z, R, nrm);
    const perRow = new SparseHead(k, head.W, head.screen, 0, { eUnit: 0, rowErr: R, kRow: kr, safety: 1.000001 });
    const outR = new Float32Array(rows);
    const nR = perRow.logits(h, outR);
    assert.equal(argmax(outR), argmax(z), `trial ${trial} (per-row)`);
    for (let i = 0; i < rows; i++) if (outR[i] === -Infinity) assert.ok(s[i]! + perRow.margin(i, nrm) < z[argmax(z)]!);
    void nR;
    // every row within δ of the winner's exact logit is in C and exact; the rest are −∞
    const m = z[argmax(z)]!;
    let finite = 0;
    for (let i = 0; i < rows; i++) {
      if (out[i] !== -Infinity) {
        finite++;
        assert.equal(out[i], z[i], `trial ${trial} row ${i}: exact logit`);
      } else assert.ok(s[i]! < m, `trial ${trial} row ${i}: dropped a row whose screened score reaches the winner`);
    }
    assert.ok(finite <= n);
    // the support it reports is exactly the rows it computed: ascending, and the only finite ones
    const sup = tight.support!;
    assert.equal(sup.n, n);
    const inSup = new Set(Array.from(sup.idx.subarray(0, sup.n)));
    for (let k2 = 1; k2 < sup.n; k2++) assert.ok(sup.idx[k2]! > sup.idx[k2 - 1]!);
    for (let i = 0; i < rows; i++) if (out[i] !== -Infinity) assert.ok(inSup.has(i), `trial ${trial} row ${i}: finite outside the support`);
    assert.equal(argmaxIn(out, sup), argmax(out));
  }
});

test('two stages: with factors at least the errors, the dense winner survives both; the second stage narrows the first', () => {
  const rows = 601, cols = 256;
  const k = kernels('plain', 2);
  const rnd = mulberry32(22);
  const W = makeTensor(k, quantInfo(GGMLType.Q8_0)!, rows, cols, rnd);
  const energy = Float64Array.from({ length: cols }, () => rnd());
  const S = splitScreen(buildScreen(k, W, k.alloc(screenBytes(rows, cols)), true, energy), 2);
  const { err: R, blocks } = rowNorms(k, W, S);
  const T = secondNorms(blocks, S.nb, S.nb1, new Float32Array(rows));
  const probe = new SparseHead(k, W, S, 0, { eUnit: 0, rowErr: R, kRow: 0, second: T, kFirst: 0 });
  assert.throws(() => new SparseHead(k, W, S, 0, { eUnit: 0, rowErr: R, kRow: 1 }), /two-stage screen/);
  const z = new Float32Array(rows), out = new Float32Array(rows);
  let narrowed = 0;
  for (let trial = 0; trial < 30; trial++) {
    const h = randVec(cols, rnd);
    k.matvec(W, h, z);
    const s1 = probe.firstScores(h).slice(0, rows);
    const s = probe.scores(h).slice(0, rows);
    const { norm, second } = scaledNorms(S, h);
    let k1 = 0, kr = 0;
    for (let i = 0; i < rows; i++) {
      k1 = Math.max(k1, Math.abs(s1[i]! - z[i]!) / (R[i]! * norm + T[i]! * second));
      kr = Math.max(kr, Math.abs(s[i]! - z[i]!) / (R[i]! * norm));
    }
    const head = new SparseHead(k, W, S, 0, { eUnit: 0, rowErr: R, kRow: kr, second: T, kFirst: k1, safety: 1.000001, denseAbove: 2 });
    head.record = true;
    const n = head.logits(h, out);
    const w = argmax(z);
    assert.equal(argmax(out), w, `trial ${trial}`);
    for (let i = 0; i < rows; i++) if (out[i] !== -Infinity) assert.equal(out[i], z[i], `trial ${trial} row ${i}: exact logit`);
    assert.ok(head.stats.first[0]! >= n);
    if (head.stats.first[0]! > n) narrowed++;
  }
  assert.ok(narrowed > 0, 'the second stage never dropped a row the first kept');
});

test('sampling: every row whose logit is within the gap of the max is computed exactly', () => {
  const rows = 257, cols = 128;
  const { head, k } = syntheticHead(rows, cols, 0, 8);
  const rnd = mulberry32(9);
  const z = new Float32Array(rows);
  const out = new Float32Array(rows);
  for (const temperature of [0.3, 0.8, 1.5]) {
    for (let trial = 0; trial < 10; trial++) {
      const h = randVec(cols, rnd);
      k.matvec(head.W, h, z);
      const s = head.scores(h).slice(0, rows);
      let e = 0;
      for (let i = 0; i < rows; i++) e = Math.max(e, Math.abs(s[i]! - z[i]!));
      const hd = new SparseHead(k, head.W, head.screen, 0, { eUnit: e / scaledNorm(head.screen, h), safety: 1.000001, epsilon: 1e-3, denseAbove: 2 });
      hd.sampling = { temperature, topP: 0.95, minP: 0 };
      hd.logits(h, out);
      const M = Math.max(...z);
      const G = hd.gap();
      assert.ok(Math.abs(G - Math.max(temperature, 1) * Math.log(rows / 1e-3)) < 1e-9);
      for (let i = 0; i < rows; i++) if (z[i]! >= M - G) assert.equal(out[i], z[i], `T ${temperature} row ${i}`);
      // the probability the missing rows would have had at this temperature is below ε
      let zAll = 0, missing = 0;
      for (let i = 0; i < rows; i++) {
        const p = Math.exp((z[i]! - M) / temperature);
        zAll += p;
        if (out[i] === -Infinity) missing += p;
      }
      assert.ok(missing / zAll < 1e-3);
    }
  }
  // min-p without top-p: rows below max + ln(min-p) are dropped by the sampler, so the gap is −ln(min-p)
  head.sampling = { temperature: 0.8, topP: 1, minP: 0.05 };
  assert.ok(Math.abs(head.gap() - -Math.log(0.05)) < 1e-12);
  head.sampling = { temperature: 0 };
  assert.equal(head.gap(), 0);
});

test('top-k sampling: every row of the true top k is exact, and far fewer rows than the gap alone keeps', () => {
  const rows = 301, cols = 128;
  const { head, k } = syntheticHead(rows, cols, 0, 12);
  const R = rowErrorNorms(k, head.W, head.screen);
  const rnd = mulberry32(13);
  const z = new Float32Array(rows);
  const out = new Float32Array(rows);
  for (const cap of [0, 100]) {
    for (let trial = 0; trial < 12; trial++) {
      const h = randVec(cols, rnd);
      k.matvec(head.W, h, z);
      const s = head.scores(h).slice(0, rows);
      const nrm = scaledNorm(head.screen, h);
      const kr = tightRowFactor(s, z, R, nrm);
      const hd = new SparseHead(k, head.W, head.screen, cap, { eUnit: 0, rowErr: R, kRow: kr, safety: 1.000001, denseAbove: 2 });
      const topK = 1 + (trial % 7);
      // penalise two of the best rows on odd trials: the order changes under the penalty
      const order = Array.from(z, (_, i) => i).sort((a, b) => z[b]! - z[a]!);
      const penalised = trial % 2 === 1 ? new Set([order[0]!, order[2]!]) : undefined;
      // a high temperature: the gap alone would keep every row, so the top-k bound does the work
      const temperature = trial < 6 ? 0.8 : 50;
      hd.sampling = { temperature, topK, topP: 0.95, minP: 0, repeatPenalty: 1.5, ...(penalised && { penalised }) };
      const n = hd.logits(h, out);
      // the final logits the sampler ranks: softcap, then the penalty
      const fin = (i: number, v: number): number => {
        const c = cap > 0 ? cap * Math.tanh(v / cap) : v;
        return penalised?.has(i) ? (c > 0 ? c / 1.5 : c * 1.5) : c;
      };
      // the sampler's top k, less the rows the gap already leaves out (probability below ε/V)
      const ranked = Array.from(z, (_, i) => i).sort((a, b) => fin(b, z[b]!) - fin(a, z[a]!));
      const want = ranked.slice(0, topK).filter((i) => fin(i, z[i]!) >= fin(ranked[0]!, z[ranked[0]!]!) - hd.gap());
      for (const i of want) assert.ok(Math.abs(out[i]! - (cap > 0 ? cap * Math.tanh(z[i]! / cap) : z[i]!)) < 1e-5, `cap ${cap} trial ${trial}: top-${topK} row ${i} not exact: ${out[i]} vs ${z[i]}, s ${s[i]}, n ${n}, want ${want.map((j) => z[j]!.toFixed(3))}`);
      if (temperature > 1) assert.ok(n < rows / 4, `cap ${cap} trial ${trial}: ${n} rows computed for top-${topK}`);
    }
  }
});

test('softcap and repetition penalty: the threshold maps through them', () => {
  const rows = 200, cols = 64;
  const k = kernels('plain', 1);
  const W = makeTensor(k, quantInfo(GGMLType.Q8_0)!, rows, cols, mulberry32(30));
  const S = buildScreen(k, W, k.alloc(screenBytes(rows, cols)));
  const rnd = mulberry32(31);
  const z = new Float32Array(rows);
  const out = new Float32Array(rows);
  const cap = 100; // logits here reach ~100: the cap bends them strongly without saturating f32
  for (let trial = 0; trial < 20; trial++) {
    const h = randVec(cols, rnd);
    k.matvec(W, h, z);
    const capped = Float32Array.from(z, (v) => cap * Math.tanh(v / cap));
    const probe = new SparseHead(k, W, S, cap, { eUnit: 0 });
    const sc = probe.scores(h);
    let e = 0;
    for (let i = 0; i < rows; i++) e = Math.max(e, Math.abs(sc[i]! - z[i]!));
    const head = new SparseHead(k, W, S, cap, { eUnit: e / scaledNorm(S, h), safety: 1.000001, denseAbove: 2 });
    const best = argmax(z);
    head.sampling = { temperature: 0, penalised: new Set([best, 3]), repeatPenalty: 1.3 };
    head.logits(h, out);
    for (const i of [best, 3]) assert.ok(Math.abs(out[i]! - capped[i]!) < 1e-6, `penalised row ${i} is exact`);
    // greedy on the penalised logits: the same winner as dense
    const pen = (a: ArrayLike<number>) => Float32Array.from(a, (v, i) => (i === best || i === 3 ? (v > 0 ? v / 1.3 : v * 1.3) : v));
    const dense = pen(capped);
    const sparse = pen(out);
    assert.equal(argmax(sparse), argmax(dense), `trial ${trial}`);
  }
});

function greedy(model: Model, ids: number[], n: number, head: SparseHead | null): number[] {
  const s = new Session(model, { ctx: ids.length + n + 1, sparseHead: head });
  return [...s.generate(ids, { maxTokens: n, temperature: 0 })].map((e) => e.id);
}

test('stories260K: sparse-head greedy tokens equal dense, wasm and reference kernels', () => {
  for (const file of ['stories260K-Q8_0.gguf', 'stories260K-F32.gguf']) {
    const model = loadModel(sharedPath('models', 'stories260K', 'gguf', file), { threads: 1 });
    instances.push(model.kernels as WasmKernels);
    // the cost model would serve most steps of this 512-row head densely: the sparse path is what is tested
    const head = buildSparseHead(model, { cache: false, denseAbove: 0.4 });
    head.adaptive = false;
    assert.ok(head.eUnit > 0);
    head.record = true;
    const ids = model.tokenizer.encode('Once upon a time, there was a little');
    const dense = greedy(model, ids, 40, null);
    assert.deepEqual(greedy(model, ids, 40, head), dense, file);
    assert.ok(head.stats.rescored.every((n) => n < model.config.vocabSize), 'some rows were skipped');
  }
  const ref = loadModel(sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), { kernels: refKernels });
  const head = buildSparseHead(ref, { cache: false, denseAbove: 0.4 });
  const ids = ref.tokenizer.encode('Lily liked to');
  assert.deepEqual(greedy(ref, ids, 24, head), greedy(ref, ids, 24, null));
});

test('SmolLM2-135M: sparse-head greedy tokens equal dense over a few dozen steps; few rows rescored', () => {
  const model = loadModel(catalogModel('smollm2-135m-instruct'), { threads: 2 });
  instances.push(model.kernels as WasmKernels);
  const head = buildSparseHead(model, { cache: false, text: 'The quick brown fox jumps over the lazy dog. In 1492, Columbus sailed the ocean blue.' });
  head.record = true;
  const ids = model.tokenizer.encode('The capital of France is Paris. The capital of Germany is');
  assert.deepEqual(greedy(model, ids, 32, head), greedy(model, ids, 32, null));
  const sorted = [...head.stats.rescored].sort((a, b) => a - b);
  assert.ok(sorted[sorted.length >> 1]! < model.config.vocabSize / 20, `median rows rescored ${sorted[sorted.length >> 1]}`);
  // the measured error covers the screen's errors on the text it was measured on
  const again = measureScreenError(model, head, model.tokenizer.encode('The quick brown fox jumps over the lazy dog.'));
  assert.ok(again.eUnit <= head.eUnit + 1e-9);
  assert.ok(again.kRow <= head.kRow + 1e-9 && head.kRow > 0);
  assert.ok(again.kFirst <= head.kFirst + 1e-9);
});

test('agreement meter: perplexity stays dense; every scored position compared; a differing argmax is counted and kept', () => {
  const model = loadModel(sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), { threads: 1 });
  instances.push(model.kernels as WasmKernels);
  const head = buildSparseHead(model, { cache: false, denseAbove: 0.4 });
  head.adaptive = false;
  const text = readFileSync(sharedPath('eval', 'tinystories', 'tinystories_val_prefix.txt'), 'utf8');
  const dense = perplexity(model, text, { ctx: 64, chunks: 4 });
  const meter = new HeadAgreementMeter(head);
  const withHead = perplexity(model, text, { ctx: 64, chunks: 4, batch: 8, headMeter: meter });
  assert.equal(withHead.ppl, dense.ppl);
  const a = meter.result();
  assert.equal(a.positions, dense.scored);
  assert.equal(a.equal, a.positions, `misses ${JSON.stringify(a.misses)}`);
  assert.ok(a.rescored.median < model.config.vocabSize / 4 && a.head_bytes_ratio < 1);

  // the comparison itself: dense logits whose argmax the sparse head cannot pick
  const h = new Float32Array(model.config.dim).map((_, i) => Math.sin(i));
  const z = new Float32Array(head.V);
  model.kernels.matvec(model.weights.output, h, z);
  const best = z.indexOf(Math.max(...z));
  const worst = z.indexOf(Math.min(...z));
  z[worst] = z[best]! + 1;
  assert.equal(meter.compare(h, 0, z, 0), false);
  const b = meter.result();
  assert.equal(b.positions, a.positions + 1);
  assert.deepEqual(b.misses.at(-1), { position: a.positions, dense: worst, sparse: best });
});

test('after a run of dense fallbacks the screen is skipped for a while (any sampling), logits still exact; not when adaptive is off', () => {
  const rows = 257, cols = 128;
  const { head, k } = syntheticHead(rows, cols, 0, 8);
  const rnd = mulberry32(14);
  const z = new Float32Array(rows);
  const out = new Float32Array(rows);
  const run = (hd: SparseHead, steps: number): void => {
    for (let step = 0; step < steps; step++) {
      const h = randVec(cols, rnd);
      k.matvec(head.W, h, z);
      assert.equal(hd.logits(h, out), rows);
      for (let i = 0; i < rows; i++) assert.equal(out[i], z[i], `step ${step} row ${i}`);
    }
  };
  const hd = new SparseHead(k, head.W, head.screen, 0, { eUnit: 10, safety: 1 });
  // top-k off and a huge gap: every screened step needs more rows than the dense fallback allows
  hd.sampling = { temperature: 100, topK: 0, topP: 0.95 };
  run(hd, 30);
  // 4 screened fallbacks, 16 skipped, then one screened (still costly: skip again), 9 skipped
  assert.equal(hd.stats.steps, 30);
  assert.equal(hd.stats.dense, 30);
  assert.equal(hd.stats.skipped, 25);
  // a greedy step during the skip is served by the dense head too
  hd.sampling = { temperature: 0 };
  run(hd, 1);
  assert.equal(hd.stats.skipped, 26);
  // the agreement checks screen every step
  const every = new SparseHead(k, head.W, head.screen, 0, { eUnit: 10, safety: 1 });
  every.adaptive = false;
  every.sampling = { temperature: 100, topK: 0, topP: 0.95 };
  run(every, 30);
  assert.equal(every.stats.dense, 30);
  assert.equal(every.stats.skipped, 0);
});

test('the screen cache: beside the model, else (not writable there) in the model cache\'s heads/; read back from where it went', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctxsparse-head-cache-'));
  const saved = process.env.CTXSPARSE_MODELS;
  try {
    process.env.CTXSPARSE_MODELS = join(dir, 'models');
    const text = 'Once upon a time, there was a little girl. She liked to play in the park with her dog.';
    const open = (file: string): Model => {
      const m = loadModel(file, { threads: 1 });
      instances.push(m.kernels as WasmKernels);
      return m;
    };
    const beside = join(dir, 'a.gguf');
    copyFileSync(sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), beside);
    const a = buildSparseHead(open(beside), { text });
    assert.equal(a.cacheFile, `${beside}.ctxhead`);
    assert.equal(buildSparseHead(open(beside), { text, onBuild: () => assert.fail('built again') }).cacheFile, a.cacheFile);
    // a directory where the file would go: the cache goes to heads/, and is found there
    const blocked = join(dir, 'b.gguf');
    copyFileSync(sharedPath('models', 'stories260K', 'gguf', 'stories260K-Q8_0.gguf'), blocked);
    mkdirSync(`${blocked}.ctxhead`);
    const b = buildSparseHead(open(blocked), { text });
    assert.ok(b.cacheFile?.startsWith(join(dir, 'models', 'heads', 'b.gguf-')), String(b.cacheFile));
    const again = buildSparseHead(open(blocked), { text, onBuild: () => assert.fail('built again') });
    assert.equal(again.cacheFile, b.cacheFile);
    assert.equal(again.kRow, b.kRow);
    assert.equal(again.eUnit, b.eUnit);
  } finally {
    if (saved === undefined) delete process.env.CTXSPARSE_MODELS;
    else process.env.CTXSPARSE_MODELS = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});
