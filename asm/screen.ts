// The screening copy of the output matrix (src/sparsity/head.ts): 4-bit codes with ONE f32 scale
// per row, of the matrix with its columns divided by c_j = (max_i |W_ij|)^0.75 (the activation is
// multiplied by c_j instead, so the product is unchanged). The column factors even out the
// columns' ranges, so one scale per row loses little against one per 32-block (measured on
// Gemma-3-270M: a median of 19 rows rescored instead of 10 at an equal safety factor), and without
// per-block scales the kernel's inner loop is nothing but nibbles and 8-bit dot products: every
// row's sums stay integers until the row ends.
//
// The screen's columns are W's reordered (perm: those holding most of the calibration states'
// energy first) and its blocks split in two stages (src/kernels/screen-layout.ts): screenMatvec
// scores every row over the first stage's nb1 blocks, screenGroups adds the rest for the groups
// the first stage keeps. Layout of a stage with nb blocks per group: row group g (rows 4g..4g+3;
// the last group zero-padded), 64-column block b:
//   at w + (g·nb + b)·128: row r's 32 code bytes at 32r; code byte j of a row covers column
//   16·(2·(j >> 4)) + (j & 15) in its low nibble and the column 16 further in its high nibble,
//   value = d_row·(code − 8).
// The row scales are f32, four per group, apart (rs). The activation (screenAct) is x_perm[j]·c_j
// in 8-bit codes with one scale for the whole vector.

import { QS, RELAXED, hi4, lo4, padd, pdx as pd, pwiden } from './q8';

/** bytes of one 64-column block of a group of four rows */
export const SCREEN_BLOCK_BYTES: i32 = 128;
/** the activation's header before its codes: f32 scale, i32 8·Σq */
export const SCREEN_ACT_HEADER: usize = 64;

/**
 * The activation for the screen at dst: x'_j = x[perm[j]]·c_j (j < n, n a multiple of 64; perm 0:
 * the identity) quantized with one scale d = amax/127, codes q_j = nearest(x'_j·(127/amax)) (i8
 * with relaxed SIMD, i16 without) at dst + SCREEN_ACT_HEADER; d (f32) at dst, 8·Σq over the first
 * stage's columns [0, split) (i32) at dst + 4 and over the second stage's [split, n) at dst + 8.
 */
export function screenAct(x: usize, c: usize, perm: usize, n: i32, split: i32, dst: usize): void {
  const q = dst + SCREEN_ACT_HEADER;
  let amax: f32 = 0;
  for (let j = 0; j < n; j++) {
    const src = perm ? <usize>load<i32>(perm + (<usize>j << 2)) : <usize>j;
    const v = abs<f32>(load<f32>(x + (src << 2)) * load<f32>(c + (<usize>j << 2)));
    if (v > amax) amax = v;
  }
  const id: f32 = amax != 0 ? <f32>127 / amax : 0;
  let sum1 = 0, sum2 = 0;
  for (let j = 0; j < n; j++) {
    const src = perm ? <usize>load<i32>(perm + (<usize>j << 2)) : <usize>j;
    const v = <i32>nearest<f32>(load<f32>(x + (src << 2)) * load<f32>(c + (<usize>j << 2)) * id);
    if (j < split) sum1 += v;
    else sum2 += v;
    if (RELAXED) store<i8>(q + <usize>j, <i8>v);
    else store<i16>(q + (<usize>j << 1), <i16>v);
  }
  store<f32>(dst, amax / 127);
  store<i32>(dst, sum1 << 3, 4);
  store<i32>(dst, sum2 << 3, 8);
}

/**
 * One row's 64-column block as partial sums P (i16x8 with relaxed SIMD: 8 products in a lane at
 * most, 8·15·127 < 2^15, so two blocks fit before widening; i32x4 without).
 */
// @ts-ignore: decorator
@inline function block(a0: v128, b0: v128, a1: v128, b1: v128, a2: v128, b2: v128, a3: v128, b3: v128, v0: v128, v1: v128): v128 {
  return padd(padd(pd(a0, b0, lo4(v0)), pd(a1, b1, hi4(v0))), padd(pd(a2, b2, lo4(v1)), pd(a3, b3, hi4(v1))));
}

/**
 * The integer sums of one group of four rows over nb 64-column blocks (codes at p, the
 * activation's codes at q), minus off (8·Σq over those columns: the codes are c + 8): lane r =
 * Σ(c − 8)·q of row r.
 */
// @ts-ignore: decorator
@inline function groupSums(p: usize, q: usize, nb: i32, off: v128): v128 {
  let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
  let b = 0;
  // two blocks per step: the rows' partial sums are widened once per 128 columns
  for (; b + 2 <= nb; b += 2, p += 2 * SCREEN_BLOCK_BYTES, q += 128 * QS) {
    let a0 = v128.load(q), a1 = v128.load(q, 16 * QS), a2 = v128.load(q, 32 * QS), a3 = v128.load(q, 48 * QS);
    let b0 = RELAXED ? a0 : v128.load(q, 16), b1 = RELAXED ? a1 : v128.load(q, 48), b2 = RELAXED ? a2 : v128.load(q, 80), b3 = RELAXED ? a3 : v128.load(q, 112);
    let e0 = block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p), v128.load(p, 16));
    let e1 = block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 32), v128.load(p, 48));
    let e2 = block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 64), v128.load(p, 80));
    let e3 = block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 96), v128.load(p, 112));
    const r = q + 64 * QS;
    a0 = v128.load(r); a1 = v128.load(r, 16 * QS); a2 = v128.load(r, 32 * QS); a3 = v128.load(r, 48 * QS);
    b0 = RELAXED ? a0 : v128.load(r, 16); b1 = RELAXED ? a1 : v128.load(r, 48); b2 = RELAXED ? a2 : v128.load(r, 80); b3 = RELAXED ? a3 : v128.load(r, 112);
    e0 = padd(e0, block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 128), v128.load(p, 144)));
    e1 = padd(e1, block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 160), v128.load(p, 176)));
    e2 = padd(e2, block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 192), v128.load(p, 208)));
    e3 = padd(e3, block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 224), v128.load(p, 240)));
    s0 = i32x4.add(s0, pwiden(e0));
    s1 = i32x4.add(s1, pwiden(e1));
    s2 = i32x4.add(s2, pwiden(e2));
    s3 = i32x4.add(s3, pwiden(e3));
  }
  if (b < nb) {
    const a0 = v128.load(q), a1 = v128.load(q, 16 * QS), a2 = v128.load(q, 32 * QS), a3 = v128.load(q, 48 * QS);
    const b0 = RELAXED ? a0 : v128.load(q, 16), b1 = RELAXED ? a1 : v128.load(q, 48), b2 = RELAXED ? a2 : v128.load(q, 80), b3 = RELAXED ? a3 : v128.load(q, 112);
    s0 = i32x4.add(s0, pwiden(block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p), v128.load(p, 16))));
    s1 = i32x4.add(s1, pwiden(block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 32), v128.load(p, 48))));
    s2 = i32x4.add(s2, pwiden(block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 64), v128.load(p, 80))));
    s3 = i32x4.add(s3, pwiden(block(a0, b0, a1, b1, a2, b2, a3, b3, v128.load(p, 96), v128.load(p, 112))));
  }
  // transpose-add: lane r = row r's whole sum; Σ(c − 8)·q = Σc·q − 8·Σq
  const t0 = i32x4.add(i32x4.shuffle(s0, s1, 0, 4, 1, 5), i32x4.shuffle(s0, s1, 2, 6, 3, 7));
  const t1 = i32x4.add(i32x4.shuffle(s2, s3, 0, 4, 1, 5), i32x4.shuffle(s2, s3, 2, 6, 3, 7));
  return i32x4.sub(i32x4.add(i32x4.shuffle(t0, t1, 0, 1, 4, 5), i32x4.shuffle(t0, t1, 2, 3, 6, 7)), off);
}

/**
 * Screened scores of row groups [g0, g1) over the first nb 64-column blocks of each group's
 * gBlocks (the first stage's blocks; nb = gBlocks for the codes1 region): out[4g + r] = row
 * (4g + r) · activation (screenAct at xa, its 8·Σq of the first stage), rs the row scales. Also the
 * best of these rows below `rows` (the first on ties) merged into best (32 bytes of scratch holding
 * a score (f32), then an index (i32; −1 when there is none): a thread that takes several ranges
 * keeps its best across them).
 */
export function screenMatvec(w: usize, nb: i32, gBlocks: i32, g0: i32, g1: i32, xa: usize, rs: usize, out: usize, rows: i32, best: usize): void {
  const gBytes = <usize>gBlocks * SCREEN_BLOCK_BYTES;
  const sv = load<f32>(best), si = load<i32>(best, 4);
  const xd = f32x4.splat(load<f32>(xa));
  const off = i32x4.splat(load<i32>(xa, 4));
  const codes = xa + SCREEN_ACT_HEADER;
  // per lane r: the best score of rows 4g + r so far and its index (strictly greater replaces)
  let bv = f32x4.splat(-Infinity);
  let bi = i32x4.splat(-1);
  let gi = i32x4.add(i32x4(0, 1, 2, 3), i32x4.splat(g0 << 2));
  const rowsV = i32x4.splat(rows);
  for (let g = g0; g < g1; g++, gi = i32x4.add(gi, i32x4.splat(4))) {
    const s = groupSums(w + <usize>g * gBytes, codes, nb, off);
    const acc = f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(v128.load(rs + (<usize>g << 4)), xd));
    v128.store(out + (<usize>g << 4), acc);
    const gt = v128.and(f32x4.gt(acc, bv), i32x4.lt_s(gi, rowsV));
    bv = v128.bitselect(acc, bv, gt);
    bi = v128.bitselect(gi, bi, gt);
  }
  // across lanes: the best score, the smallest index on ties
  // (the lanes through memory: extract_lane wants a constant lane)
  v128.store(best, bv);
  v128.store(best, bi, 16);
  let v = load<f32>(best), i = load<i32>(best, 16);
  for (let l: usize = 1; l < 4; l++) {
    const lv = load<f32>(best + (l << 2)), li = load<i32>(best + (l << 2), 16);
    if (li >= 0 && (i < 0 || lv > v || (lv == v && li < i))) { v = lv; i = li; }
  }
  if (si >= 0 && (i < 0 || sv > v || (sv == v && si < i))) { v = sv; i = si; }
  store<f32>(best, v);
  store<i32>(best, i, 4);
}

/**
 * The second stage: for each of the ng groups listed at gidx (i32), the scores over the last nb2
 * blocks (the codes2 region at w2, nb2 blocks per group; the activation's columns from split on)
 * added to out: out[4g + r] += row (4g + r)'s second part · activation (in f32, after the first
 * stage's product).
 */
export function screenGroups(w2: usize, nb2: i32, gidx: usize, ng: i32, xa: usize, split: i32, rs: usize, out: usize): void {
  const gBytes = <usize>nb2 * SCREEN_BLOCK_BYTES;
  const xd = f32x4.splat(load<f32>(xa));
  const off = i32x4.splat(load<i32>(xa, 8));
  const codes = xa + SCREEN_ACT_HEADER + <usize>split * QS;
  for (let k = 0; k < ng; k++) {
    const g = <usize>load<i32>(gidx + (<usize>k << 2));
    const s = groupSums(w2 + g * gBytes, codes, nb2, off);
    const o = out + (g << 4);
    v128.store(o, f32x4.add(v128.load(o), f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(v128.load(rs + (g << 4)), xd))));
  }
}

/**
 * The sparse head's candidates: indices i in [lo, hi) with s[i] + kappa·r[i] + kappa2·t[i] ≥ base
 * (r, t 0: that term is absent), and `always`, ascending, into idx; returns how many. The sums are
 * in f64, in that order, as the JavaScript reference (src/sparsity/head.ts) computes them, so both
 * select the same rows.
 */
export function screenSelect(s: usize, r: usize, t: usize, lo: i32, hi: i32, kappa: f64, kappa2: f64, base: f64, always: i32, idx: usize): i32 {
  let c = 0;
  // a conservative f32 test first, then the exact f64 one on the lanes it lets through. The f32
  // sum s + κ·r + κ2·t is off by at most ~5·2^-24 of |s| + |κ·r| + |κ2·t| (κ, the products and
  // the sums each rounded once) and base by 2^-24 of |base|: a slack of 2^-20 of each covers both
  const K32 = f32x4.splat(<f32>kappa), K2 = f32x4.splat(<f32>kappa2);
  const E = f32x4.splat(<f32>9.5367431640625e-7);
  const B32 = f32x4.splat(<f32>(base - (Math.abs(base) + 1) * 9.5367431640625e-7));
  let i = lo;
  for (; i + 4 <= hi; i += 4) {
    const o = <usize>i << 2;
    const sv = v128.load(s + o);
    let u = sv, mag = f32x4.abs(sv);
    if (r) {
      const kr = f32x4.mul(K32, v128.load(r + o));
      u = f32x4.add(u, kr);
      mag = f32x4.add(mag, f32x4.abs(kr));
    }
    if (t) {
      const kt = f32x4.mul(K2, v128.load(t + o));
      u = f32x4.add(u, kt);
      mag = f32x4.add(mag, f32x4.abs(kt));
    }
    const m = i32x4.bitmask(f32x4.ge(f32x4.add(u, f32x4.mul(E, mag)), B32));
    if (m == 0 && (always < i || always >= i + 4)) continue;
    for (let k = 0; k < 4; k++) {
      const j = i + k;
      if (selected(s, r, t, j, kappa, kappa2, base) || j == always) { store<i32>(idx + (<usize>c << 2), j); c++; }
    }
  }
  for (; i < hi; i++) {
    if (selected(s, r, t, i, kappa, kappa2, base) || i == always) { store<i32>(idx + (<usize>c << 2), i); c++; }
  }
  return c;
}

/** rows per unit of the threaded candidate scan (T_SCREEN_SELECT) */
export const SELECT_UNIT: i32 = 4096;

/**
 * Units [u0, u1) of the candidate scan over n rows (SELECT_UNIT rows each): unit u's candidates go
 * to idx + u·SELECT_UNIT·4 and their number to counts[u] (i32). p: kappa, kappa2, base (f64).
 */
export function screenSelectUnits(s: usize, r: usize, t: usize, n: i32, p: usize, always: i32, idx: usize, counts: usize, u0: i32, u1: i32): void {
  for (let u = u0; u < u1; u++) {
    const lo = u * SELECT_UNIT, hi = min(n, lo + SELECT_UNIT);
    store<i32>(counts + (<usize>u << 2), screenSelect(s, r, t, lo, hi, load<f64>(p), load<f64>(p, 8), load<f64>(p, 16), always, idx + (<usize>lo << 2)));
  }
}

// @ts-ignore: decorator
@inline function selected(s: usize, r: usize, t: usize, j: i32, kappa: f64, kappa2: f64, base: f64): bool {
  const o = <usize>j << 2;
  let v = <f64>load<f32>(s + o);
  if (r) v += kappa * <f64>load<f32>(r + o);
  if (t) v += kappa2 * <f64>load<f32>(t + o);
  return v >= base;
}

// ------------------------------------------------------------------ building the screen
// The same arithmetic as quantizeScreen in src/sparsity/head.ts (float64, round half up), so the
// two build bit-identical screens.

const CANDIDATES: StaticArray<f64> = [-8, -8.5, -9, -7.5, 7, 7.5, 6.5];

// @ts-ignore: decorator
@inline function code(v: f64, id: f64): i32 {
  const c = <i32>Math.floor(v * id + 0.5);
  return c < -8 ? -8 : c > 7 ? 7 : c;
}

/** The column maxima: colmax[j] = max(colmax[j], |x[r·cols + j]|) over four f32 rows at x. */
export function screenColMax(x: usize, cols: i32, colmax: usize): void {
  for (let r = 0; r < 4; r++) {
    for (let j = 0; j < cols; j++) {
      const v = abs<f32>(load<f32>(x + ((<usize>(r * cols + j)) << 2)));
      const p = colmax + (<usize>j << 2);
      if (v > load<f32>(p)) store<f32>(p, v);
    }
  }
}

/**
 * Reorder the columns of four f32 rows of `cols` at x: row[j] ← row[perm[j]] (perm: i32), through
 * tmp (cols f32).
 */
export function screenPermute4(x: usize, cols: i32, perm: usize, tmp: usize): void {
  for (let r = 0; r < 4; r++) {
    const xr = x + (<usize>(r * cols) << 2);
    for (let j = 0; j < cols; j++) store<f32>(tmp + (<usize>j << 2), load<f32>(xr + (<usize>load<i32>(perm + (<usize>j << 2)) << 2)));
    memory.copy(xr, tmp, <usize>cols << 2);
  }
}

/**
 * Quantize one group: four f32 rows of nb·64 at x, divided column-wise by c (f32 at c), into the
 * group's blocks at dst and its four row scales (f32) at rs. x is overwritten (the divided rows).
 */
export function screenQuantizeGroup(x: usize, nb: i32, c: usize, dst: usize, rs: usize, search: bool): void {
  const cols = nb << 6;
  for (let r = 0; r < 4; r++) {
    const xr = x + (<usize>(r * cols) << 2);
    // the divided row, in f64 as the reference computes it, rounded back to f32 in place
    let amax: f64 = 0, m: f64 = 0;
    for (let j = 0; j < cols; j++) {
      const v = <f64>load<f32>(xr + (<usize>j << 2)) / <f64>load<f32>(c + (<usize>j << 2));
      store<f32>(xr + (<usize>j << 2), <f32>v);
      const a = Math.abs(<f64><f32>v);
      if (a > amax) { amax = a; m = <f64><f32>v; }
    }
    let best: f64 = amax == 0 ? 0 : m / -8;
    if (search && amax != 0) {
      let bestErr = Infinity;
      for (let k = 0; k < CANDIDATES.length; k++) {
        const d = m / unchecked(CANDIDATES[k]), id = 1 / d;
        let err: f64 = 0;
        for (let j = 0; j < cols; j++) {
          const v = <f64>load<f32>(xr + (<usize>j << 2));
          const e = v - <f64>code(v, id) * d;
          err += e * e;
        }
        if (err < bestErr) { bestErr = err; best = d; }
      }
    }
    const d = <f64><f32>best;
    const id = d == 0 ? 0 : 1 / d;
    store<f32>(rs + (<usize>r << 2), <f32>d);
    for (let b = 0; b < nb; b++) {
      const o = dst + <usize>b * SCREEN_BLOCK_BYTES + (<usize>r << 5);
      for (let j = 0; j < 32; j++) {
        const col = (b << 6) + ((j >> 4) << 5) + (j & 15);
        const lo = code(<f64>load<f32>(xr + (<usize>col << 2)), id) + 8;
        const hi = code(<f64>load<f32>(xr + (<usize>(col + 16) << 2)), id) + 8;
        store<u8>(o + <usize>j, <u8>(lo | (hi << 4)));
      }
    }
  }
}
