// The screening copy of the output matrix (src/sparsity/head.ts): 4-bit codes in blocks of 32
// along the hidden dimension with one bf16 scale per block, FOUR ROWS INTERLEAVED so that one
// pass multiplies a block of four rows and reduces their sums into the lanes of one vector
// (one convert, one scale multiply and one add per four rows and 32 columns, instead of per row).
//
// Layout, for row group g (rows 4g..4g+3; the last group zero-padded) and block b of nb:
//   at w + (g·nb + b)·72:  4 × bf16 scale (row 0..3), then 4 × 16 bytes of codes (row r at 8 + 16r)
//   code byte j of a row: low nibble = column j, high nibble = column j + 16; value = d·(code − 8)
// The activation is Q8_0 (asm/q8.ts), as for Q4_0 weights.

import { BLK32, QS, RELAXED, hi4, lo4, padd, pdx as pd, pwiden } from './q8';

export const SCREEN_GROUP_BYTES: i32 = 72;

/**
 * Σ over the 32 columns of one row's block as partial sums: eight i16 of 4 products each (relaxed
 * build; an i32 lane holds two of them) or four i32 (plain).
 */
// @ts-ignore: decorator
@inline function rowSums(xl: v128, xh: v128, yl: v128, yh: v128, v: v128): v128 {
  return padd(pd(xl, xh, lo4(v)), pd(yl, yh, hi4(v)));
}
/**
 * The activation's per-block constants as the screen kernel reads them, once per mat-vec (nb·32
 * bytes at dst): block b's scale in four f32 lanes, then 8·Σq (its codes' sum) in four i32 lanes.
 */
export function screenConsts(qa: usize, nb: i32, dst: usize): void {
  for (let b = 0; b < nb; b++) {
    const M = qa + <usize>b * BLK32 + 32 * QS;
    v128.store(dst + (<usize>b << 5), f32x4.splat(load<f32>(M)));
    v128.store(dst + (<usize>b << 5), i32x4.splat(load<i32>(M, 4) << 3), 16);
  }
}

/**
 * Screened scores of row groups [g0, g1): out[4g + r] = row (4g + r) · activation (Q8_0 at qa,
 * its constants from screenConsts at consts).
 * nb = blocks of 32 per row. Also the best of these rows below `rows` (the first on ties) merged
 * into best (32 bytes of scratch holding a score (f32), then an index (i32; −1 when there is none):
 * a thread that takes several ranges keeps its best across them).
 */
export function screenMatvec(w: usize, nb: i32, g0: i32, g1: i32, qa: usize, consts: usize, out: usize, rows: i32, best: usize): void {
  const gBytes = <usize>nb * SCREEN_GROUP_BYTES;
  const sv = load<f32>(best), si = load<i32>(best, 4);
  // per lane r: the best score of rows 4g + r so far and its index (strictly greater replaces)
  let bv = f32x4.splat(-Infinity);
  let bi = i32x4.splat(-1);
  let gi = i32x4.add(i32x4(0, 1, 2, 3), i32x4.splat(g0 << 2));
  const rowsV = i32x4.splat(rows);
  const zero = i32x4.splat(0);
  for (let g = g0; g < g1; g++, gi = i32x4.add(gi, i32x4.splat(4))) {
    let p = w + <usize>g * gBytes;
    let q = qa;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++, p += SCREEN_GROUP_BYTES, q += BLK32) {
      // the block's activation codes loaded once for the four rows
      const xl = v128.load(q), xh = RELAXED ? xl : v128.load(q, 16);
      const yl = v128.load(q + 16 * QS), yh = RELAXED ? yl : v128.load(q + 16 * QS, 16);
      const e0 = rowSums(xl, xh, yl, yh, v128.load(p, 8));
      const e1 = rowSums(xl, xh, yl, yh, v128.load(p, 24));
      const e2 = rowSums(xl, xh, yl, yh, v128.load(p, 40));
      const e3 = rowSums(xl, xh, yl, yh, v128.load(p, 56));
      // transpose-add: lane r = the whole block sum of row r. In the relaxed build the rows' sums
      // are still i16 pairs here (16 products of ≤ 127·15 each at most, below 2^15) and are
      // widened once for all four rows at the end, not once per row
      const t0 = padd(i32x4.shuffle(e0, e1, 0, 4, 1, 5), i32x4.shuffle(e0, e1, 2, 6, 3, 7));
      const t1 = padd(i32x4.shuffle(e2, e3, 0, 4, 1, 5), i32x4.shuffle(e2, e3, 2, 6, 3, 7));
      let s = pwiden(padd(i32x4.shuffle(t0, t1, 0, 1, 4, 5), i32x4.shuffle(t0, t1, 2, 3, 6, 7)));
      const c = consts + (<usize>b << 5);
      // Σ(c − 8)·x = Σc·x − 8·Σx
      s = i32x4.sub(s, v128.load(c, 16));
      // bf16 → f32: the 16 bits are the high half of the f32 (one unpack with zeros)
      const d = i8x16.shuffle(zero, v128.load(p), 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(d, v128.load(c))));
    }
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
 * The sparse head's candidates: indices i < n with s[i] + kappa·r[i] ≥ base (r = 0: s[i] ≥ base),
 * and `always`, ascending, into idx; returns how many. The sums are in f64, as the JavaScript
 * reference (src/sparsity/head.ts) computes them, so both select the same rows.
 */
export function screenSelect(s: usize, r: usize, n: i32, kappa: f64, base: f64, always: i32, idx: usize): i32 {
  let c = 0;
  // a conservative f32 test first, then the exact f64 one on the lanes it lets through. The f32
  // sum s + κ·r is off by at most ~3·2^-24 of |s| + |κ·r| (κ, the product and the sum each rounded
  // once) and base by 2^-24 of |base|: a slack of 2^-20 of each covers both
  const K32 = f32x4.splat(<f32>kappa);
  const E = f32x4.splat(<f32>9.5367431640625e-7);
  const B32 = f32x4.splat(<f32>(base - (Math.abs(base) + 1) * 9.5367431640625e-7));
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const sv = v128.load(s + o);
    let t = sv, mag = f32x4.abs(sv);
    if (r) {
      const kr = f32x4.mul(K32, v128.load(r + o));
      t = f32x4.add(sv, kr);
      mag = f32x4.add(mag, f32x4.abs(kr));
    }
    const m = i32x4.bitmask(f32x4.ge(f32x4.add(t, f32x4.mul(E, mag)), B32));
    if (m == 0 && (always < i || always >= i + 4)) continue;
    for (let k = 0; k < 4; k++) {
      const j = i + k;
      let v = <f64>load<f32>(s + (<usize>j << 2));
      if (r) v += kappa * <f64>load<f32>(r + (<usize>j << 2));
      if (v >= base || j == always) { store<i32>(idx + (<usize>c << 2), j); c++; }
    }
  }
  for (; i < n; i++) {
    let v = <f64>load<f32>(s + (<usize>i << 2));
    if (r) v += kappa * <f64>load<f32>(r + (<usize>i << 2));
    if (v >= base || i == always) { store<i32>(idx + (<usize>c << 2), i); c++; }
  }
  return c;
}

// ------------------------------------------------------------------ building the screen
// The same arithmetic as quantizeBlock in src/sparsity/head.ts (float64, round half up), so the
// two build bit-identical screens.

const CANDIDATES: StaticArray<f64> = [-8, -8.5, -9, -7.5, 7, 7.5, 6.5];

// @ts-ignore: decorator
@inline function code(v: f64, id: f64): i32 {
  const c = <i32>Math.floor(v * id + 0.5);
  return c < -8 ? -8 : c > 7 ? 7 : c;
}

/** f32 → bf16 bits, round to nearest even (NaN is never a scale here). */
// @ts-ignore: decorator
@inline function toBF16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  return ((x + 0x7fff + ((x >> 16) & 1)) >> 16) & 0xffff;
}

/** One block of 32 f32 at x → 16 code bytes at dst; returns the bf16 bits of the scale. */
function quantizeBlock(x: usize, dst: usize, search: bool): u32 {
  let amax: f64 = 0, m: f64 = 0;
  for (let j = 0; j < 32; j++) {
    const v = <f64>load<f32>(x + (<usize>j << 2));
    if (Math.abs(v) > amax) { amax = Math.abs(v); m = v; }
  }
  if (amax == 0) {
    memory.fill(dst, 0x88, 16);
    return 0;
  }
  let best = m / -8;
  if (search) {
    let bestErr = Infinity;
    for (let k = 0; k < CANDIDATES.length; k++) {
      const d = m / unchecked(CANDIDATES[k]), id = 1 / d;
      let err: f64 = 0;
      for (let j = 0; j < 32; j++) {
        const v = <f64>load<f32>(x + (<usize>j << 2));
        const r = v - <f64>code(v, id) * d;
        err += r * r;
      }
      if (err < bestErr) { bestErr = err; best = d; }
    }
  }
  const h = toBF16(<f32>best);
  const d = <f64>reinterpret<f32>(h << 16);
  const id = d == 0 ? 0 : 1 / d;
  for (let j = 0; j < 16; j++) {
    const lo = code(<f64>load<f32>(x + (<usize>j << 2)), id) + 8;
    const hi = code(<f64>load<f32>(x + (<usize>(j + 16) << 2)), id) + 8;
    store<u8>(dst + j, <u8>(lo | (hi << 4)));
  }
  return h;
}

/** Quantize one group: four dequantized rows of nb·32 f32 at x → the group's blocks at dst. */
export function screenQuantizeGroup(x: usize, nb: i32, dst: usize, search: bool): void {
  const cols = <usize>nb << 5;
  for (let b = 0; b < nb; b++) {
    const o = dst + <usize>b * SCREEN_GROUP_BYTES;
    for (let r = 0; r < 4; r++) {
      store<u16>(o + (<usize>r << 1), <u16>quantizeBlock(x + ((<usize>r * cols + (<usize>b << 5)) << 2), o + 8 + (<usize>r << 4), search));
    }
  }
}
