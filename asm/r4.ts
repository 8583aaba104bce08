// Four rows interleaved ("r4"): a decode mat-vec on the 32-blocks of four consecutive rows at once.
//
// Row by row, a block of 32 weights costs ~24 instructions of which two are the products: the
// unpacking, the widening of the sums and above all the per-block scaling (an f16 scale looked up,
// multiplied, splatted, applied) are paid per row. With the four rows of a group side by side in
// memory, the four rows' integer sums are gathered into the lanes of one vector and the scaling is
// one vector op for all four (the scales, stored side by side, are one load). The layout has the
// same bytes as the original — each ggml block's fields, for four rows, one field after the other:
//   superblock (rows 4g..4g+3, input block b) = field 0 of rows 0..3, field 1 of rows 0..3, …
//   Q4_0: d[4] f16, qs[4][16]            (72 bytes)
//   Q4_1: d[4] f16, m[4] f16, qs[4][16]  (80)
//   Q5_0: d[4] f16, qh planes[16], qs[4][16] (88)
//   Q8_0: d[4] f16, qs[4][32]            (136)
// and superblocks run along the row group (g·nb + b), so a group of four rows occupies exactly the
// bytes the four rows did, and packing is done in place, group by group.
//
// Q5_0's fifth bits (one u32 per row: bit j = code j's) are stored as eight bit planes over the
// 16 bytes of the field: bit k of byte j is bit 16·(k & 1) + j of row k >> 1, i.e. plane k is the
// fifth bits of the k-th code vector the kernel unpacks (row k >> 1, low nibbles for even k, high
// for odd). One shift and one mask then put them in place (bit 4 of each byte) for 16 codes, where
// spreading a u32 over bytes took a splat, a shuffle, a compare and two masks: the Q5_0 mat-vec
// ran 2.1× faster for it (4.5 → 9.6 GB/s, one thread, a Qwen-sized matrix). Same bits, other
// places: the sums and every result are unchanged.
//
// Measured (bench/interleaved-vs-rows.mjs, both layouts in one process): SmolLM2's Q4_1 mat-vecs
// 1.7–2.1× the row-by-row kernel on one thread, decode 1.4×; Q5_0 1.3× (its fifth bits cost as
// much as the products), then 2.1× more with the bits in planes (below).
//
// The scales stay f16: their bits are moved into f32 position with one shift and a mask, which
// gives the f16 value times 2^-112 exactly for every finite f16 (a normal f16 becomes a normal f32,
// a subnormal one a subnormal f32), and the activation's scale carries the 2^112.
//
// Every kernel here sums a token's blocks in one order (r4matvec for one token, r4matmul for a
// batch): a sequence decoded in a batch gets bit for bit the logits it gets alone.

import { f16, Q4_0, Q4_1, Q5_0, Q8_0 } from './common';
import { BLK32, QS, lo4, hi4, padd, pdx as pd, pwiden, RELAXED } from './q8';

/** Whether a type has the interleaved layout and kernel. */
export function r4supports(type: i32): bool {
  return type == Q4_0 || type == Q4_1 || type == Q5_0 || type == Q8_0;
}

/** Bytes of one ggml block of 32 (the types r4supports). */
// @ts-ignore: decorator
@inline function blockBytes(type: i32): usize { return type == Q4_0 ? 18 : type == Q4_1 ? 20 : type == Q5_0 ? 22 : 34; }
/** The fields of a block: sizes of field 0, 1 (0 when absent), 2 */
// @ts-ignore: decorator
@inline function field0(type: i32): usize { return 2; }
// @ts-ignore: decorator
@inline function field1(type: i32): usize { return type == Q4_1 ? 2 : type == Q5_0 ? 4 : 0; }
/** bytes of a row's codes in a block: 16 (4-bit), 32 (Q8_0) */
// @ts-ignore: decorator
@inline function codeBytes(type: i32): usize { return type == Q8_0 ? 32 : 16; }

/** Q5_0: the four rows' qh words (at sb + 8, as scatterBlock left them) → the bit planes, in place. */
// @ts-ignore: decorator
@inline function toPlanes(sb: usize): void {
  const h = v128.load(sb + 8);
  const bit = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  let out = v128.splat<i32>(0);
  for (let k = 0; k < 8; k++) {
    // byte j ← byte (j >> 3) of the 16-bit half k of h, then 0xFF where its bit j & 7 is set
    const spread = i8x16.swizzle(h, i8x16.add(i8x16.splat(<i8>(2 * k)), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)));
    out = v128.or(out, v128.and(i8x16.eq(v128.and(spread, bit), bit), i8x16.splat(<i8>(<i32>1 << k))));
  }
  v128.store(sb + 8, out);
}
/** Q5_0: row r's qh word out of the planes at p. */
// @ts-ignore: decorator
@inline function fromPlanes(p: usize, r: i32): u32 {
  const v = v128.load(p);
  // bit k of every byte to its top bit (a 16-bit shift: the bits that cross into the next byte are not looked at)
  const lo = i8x16.bitmask(i16x8.shl(v, 7 - 2 * r));
  const hi = i8x16.bitmask(i16x8.shl(v, 6 - 2 * r));
  return lo | (hi << 16);
}

/** Copy one ggml block (row r of 4, at src) into its places in the superblock at sb. */
// @ts-ignore: decorator
@inline function scatterBlock(type: i32, src: usize, sb: usize, r: usize): void {
  const f0 = field0(type), f1 = field1(type);
  memory.copy(sb + r * f0, src, f0);
  if (f1) memory.copy(sb + 4 * f0 + r * f1, src + f0, f1);
  const c = sb + 4 * (f0 + f1) + r * codeBytes(type);
  v128.store(c, v128.load(src + f0 + f1));
  if (type == Q8_0) v128.store(c, v128.load(src + f0 + 16), 16);
}
/** The reverse: row r's ggml block out of the superblock at sb, to dst. */
// @ts-ignore: decorator
@inline function gatherBlock(type: i32, sb: usize, r: usize, dst: usize): void {
  const f0 = field0(type), f1 = field1(type);
  memory.copy(dst, sb + r * f0, f0);
  if (type == Q5_0) store<u32>(dst + f0, fromPlanes(sb + 8, <i32>r));
  else if (f1) memory.copy(dst + f0, sb + 4 * f0 + r * f1, f1);
  const c = sb + 4 * (f0 + f1) + r * codeBytes(type);
  v128.store(dst + f0 + f1, v128.load(c));
  if (type == Q8_0) v128.store(dst + f0 + 16, v128.load(c, 16));
}

/**
 * Whether a matrix (ggml rows) can take the interleaved layout: every type r4supports can, except
 * a Q8_0 matrix with a code of −128. ggml never writes one (d = amax/127), and the Q8_0 kernel
 * here flips weights' signs, which −128 does not survive.
 */
export function r4packable(type: i32, w: usize, rowBytes: usize, rows: i32): bool {
  if (!r4supports(type)) return false;
  if (type != Q8_0) return true;
  const min = i8x16.splat(-128);
  let hit = i8x16.splat(0);
  const end = w + <usize>rows * rowBytes;
  for (let p = w; p < end; p += 34) hit = v128.or(hit, v128.or(i8x16.eq(v128.load(p, 2), min), i8x16.eq(v128.load(p, 18), min)));
  return !v128.any_true(hit);
}

/**
 * Interleave the rows of a matrix (rows a multiple of 4) in place, four rows at a time; tmp holds
 * 4·rowBytes bytes.
 */
export function r4pack(type: i32, w: usize, rowBytes: usize, rows: i32, tmp: usize): void {
  const nb = rowBytes / blockBytes(type), bb = blockBytes(type), sbBytes = 4 * bb;
  for (let g = 0; g < rows >> 2; g++) {
    const grp = w + <usize>g * 4 * rowBytes;
    memory.copy(tmp, grp, 4 * rowBytes);
    for (let b: usize = 0; b < nb; b++) {
      for (let r: usize = 0; r < 4; r++) scatterBlock(type, tmp + r * rowBytes + b * bb, grp + b * sbBytes, r);
      if (type == Q5_0) toPlanes(grp + b * sbBytes);
    }
  }
}

/** Rows [r0, r1) of an interleaved matrix in the ggml layout, to dst (row r0 first). */
export function r4rows(type: i32, w: usize, rowBytes: usize, r0: i32, r1: i32, dst: usize): void {
  const nb = rowBytes / blockBytes(type), bb = blockBytes(type), sbBytes = 4 * bb;
  for (let r = r0; r < r1; r++) {
    const grp = w + <usize>(r >> 2) * 4 * rowBytes;
    const o = dst + <usize>(r - r0) * rowBytes;
    for (let b: usize = 0; b < nb; b++) gatherBlock(type, grp + b * sbBytes, <usize>(r & 3), o + b * bb);
  }
}

/** [Σ P0, Σ P1, Σ P2, Σ P3] (i32x4) of four i16x8 partial-sum vectors whose pairwise sums stay in i16 (4-bit codes). */
// @ts-ignore: decorator
@inline function tsum4s(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i16x8.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i16x8.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.extadd_pairwise_i16x8_s(i16x8.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7)));
}
/**
 * tsum4s for 5-bit codes: the first pairwise sums still fit in i16 (4 products of ≤ 31·127 each,
 * twice: ≤ 31,496), the second would not, so the pairs are widened in between (two widenings
 * where widening each row's sums took four).
 */
// @ts-ignore: decorator
@inline function tsum4w(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7)));
  const cd = i32x4.extadd_pairwise_i16x8_s(i16x8.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7)));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}
/** [Σ lanes of a, Σ b, Σ c, Σ d] (i32x4) */
// @ts-ignore: decorator
@inline function tsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/** Four f16 (sign-extended into i32 lanes) as f32 times 2^-112: the bits moved into place. */
// @ts-ignore: decorator
@inline function h4raw(v: v128): v128 {
  return v128.and(i32x4.shl(v, 13), i32x4.splat(0x8fffffff));
}

/** Q5_0: plane k of the fifth bits (16 bytes, qh) as 0x10 in the bytes whose code has it. */
// @ts-ignore: decorator
@inline function plane(qh: v128, k: i32): v128 {
  // bit k of each byte to bit 4; 16-bit shifts move bits across bytes only outside bit 4's reach
  const m = i8x16.splat(0x10);
  if (k < 4) return v128.and(i16x8.shl(qh, 4 - k), m);
  if (k == 4) return v128.and(qh, m);
  return v128.and(i16x8.shr_u(qh, k - 4), m);
}

/** plane() for a k known only at run time (row gathers). */
// @ts-ignore: decorator
@inline function planeOf(qh: v128, k: i32): v128 {
  return v128.and(k <= 4 ? i16x8.shl(qh, 4 - k) : i16x8.shr_u(qh, k - 4), i8x16.splat(0x10));
}

/**
 * Code vector k of a superblock's four rows (row k >> 1; low nibbles for even k, high for odd), from
 * the row's 16 code bytes v and, for Q5_0, the fifth bits' planes qh.
 */
// @ts-ignore: decorator
@inline function codeVec(type: i32, v: v128, qh: v128, k: i32): v128 {
  const c = k & 1 ? hi4(v) : lo4(v);
  return type == Q5_0 ? v128.or(c, plane(qh, k)) : c;
}

/** One row's partial sums for one token: its two code vectors a, b times the activation's two halves. */
// @ts-ignore: decorator
@inline function rowPart(xl: v128, xh: v128, xl2: v128, xh2: v128, a: v128, b: v128): v128 {
  return padd(pd(xl, xh, a), pd(xl2, xh2, b));
}

/** a·b + c, fused where relaxed SIMD allows it (the same in every kernel here, so their sums agree) */
// @ts-ignore: decorator
@inline function fma4(a: v128, b: v128, c: v128): v128 {
  return RELAXED ? f32x4.relaxed_madd(a, b, c) : f32x4.add(f32x4.mul(a, b), c);
}

/**
 * Row groups [g0, g1) of y = W·x on the interleaved layout: out[4g + r] for r < 4. qa: the
 * activation (Q8_1 for Q4_1, Q8_0 for Q4_0 / Q5_0 / Q8_0, asm/q8.ts's layout).
 */
export function r4matvec(type: i32, w: usize, rowBytes: usize, g0: i32, g1: i32, qa: usize, out: usize): void {
  // one loop per type (the type a constant in each, its branches folded)
  if (type == Q4_1) r4matvecK(Q4_1, w, rowBytes, g0, g1, qa, out);
  else if (type == Q4_0) r4matvecK(Q4_0, w, rowBytes, g0, g1, qa, out);
  else if (type == Q5_0) r4matvecK(Q5_0, w, rowBytes, g0, g1, qa, out);
  else r4matvecK(Q8_0, w, rowBytes, g0, g1, qa, out);
}

// @ts-ignore: decorator
@inline function r4matvecK(type: i32, w: usize, rowBytes: usize, g0: i32, g1: i32, qa: usize, out: usize): void {
  if (type == Q8_0) {
    for (let g = g0; g < g1; g++) v128.store(out + (<usize>g << 4), r4groupQ8(w + <usize>g * 4 * rowBytes, rowBytes, qa));
    return;
  }
  const nb = <i32>(rowBytes / blockBytes(type));
  const sbBytes = 4 * blockBytes(type);
  const codes: usize = type == Q4_0 ? 8 : type == Q4_1 ? 16 : 24;
  for (let g = g0; g < g1; g++) {
    let p = w + <usize>g * 4 * rowBytes;
    let q = qa;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++, p += sbBytes, q += BLK32) {
      // each row's codes loaded and multiplied before the next row's are: fewer vectors live at
      // once (all eight code vectors first kept the sum on the stack, a store and a load per block)
      const xl = v128.load(q), xh = RELAXED ? xl : v128.load(q, 16);
      const xl2 = v128.load(q + 16 * QS), xh2 = RELAXED ? xl2 : v128.load(q + 16 * QS, 16);
      const qh = type == Q5_0 ? v128.load(p, 8) : i8x16.splat(0);
      const v0 = v128.load(p + codes);
      const P0 = rowPart(xl, xh, xl2, xh2, codeVec(type, v0, qh, 0), codeVec(type, v0, qh, 1));
      const v1 = v128.load(p + codes + 16);
      const P1 = rowPart(xl, xh, xl2, xh2, codeVec(type, v1, qh, 2), codeVec(type, v1, qh, 3));
      const v2 = v128.load(p + codes + 32);
      const P2 = rowPart(xl, xh, xl2, xh2, codeVec(type, v2, qh, 4), codeVec(type, v2, qh, 5));
      const v3 = v128.load(p + codes + 48);
      const P3 = rowPart(xl, xh, xl2, xh2, codeVec(type, v3, qh, 6), codeVec(type, v3, qh, 7));
      const S = rowSums(type, P0, P1, P2, P3);
      const dm = type == Q4_1 ? v128.load(p) : v128.load64_zero(p);
      acc = blockTerm(type, acc, S, q + 32 * QS, h4raw(i32x4.extend_low_i16x8_s(dm)));
      if (type == Q4_1) acc = fma4(h4raw(i32x4.extend_high_i16x8_s(dm)), v128.load(q + 32 * QS, 32), acc);
    }
    v128.store(out + (<usize>g << 4), acc);
  }
}

/** Q8_0: the four rows of the group at p · the activation at qa: [y_r0, y_r1, y_r2, y_r3]. */
// @ts-ignore: decorator
@inline function r4groupQ8(p: usize, rowBytes: usize, qa: usize): v128 {
  const nb = <i32>(rowBytes / 34);
  let q = qa;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++, p += 136, q += BLK32) {
    // each row's codes loaded just before their products (as in r4matvecK); |x| and x's sign mask once for all four rows
    const c = p + 8;
    const x0 = v128.load(q), x1 = v128.load(q + 16 * QS);
    const a0 = xu(x0), a1 = xm(x0, q), b0 = xu(x1), b1 = xm(x1, q + 16 * QS);
    const s0 = i32x4.add(sd(a0, a1, v128.load(c)), sd(b0, b1, v128.load(c, 16)));
    const s1 = i32x4.add(sd(a0, a1, v128.load(c, 32)), sd(b0, b1, v128.load(c, 48)));
    const s2 = i32x4.add(sd(a0, a1, v128.load(c, 64)), sd(b0, b1, v128.load(c, 80)));
    const s3 = i32x4.add(sd(a0, a1, v128.load(c, 96)), sd(b0, b1, v128.load(c, 112)));
    acc = blockTerm(Q8_0, acc, tsum4(s0, s1, s2, s3), q + 32 * QS, h4raw(i32x4.extend_low_i16x8_s(v128.load64_zero(p))));
  }
  return acc;
}

/**
 * Q8_0: row k of the group at p · the activation, reading only that row's scale and codes (34 of
 * each superblock's 136 bytes; a quarter of the products). Its lane does what r4groupQ8's lane k
 * does — the same exact integer sum, the same scale product and fused add per block — so a
 * gathered row (the sparse output layer's exact logits) has the bits the full mat-vec gives it.
 */
// @ts-ignore: decorator
@inline function r4rowQ8(p: usize, rowBytes: usize, k: usize, qa: usize): f32 {
  const nb = <i32>(rowBytes / 34);
  let q = qa;
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++, p += 136, q += BLK32) {
    const c = p + 8 + (k << 5);
    const x0 = v128.load(q), x1 = v128.load(q + 16 * QS);
    const a0 = xu(x0), a1 = xm(x0, q), b0 = xu(x1), b1 = xm(x1, q + 16 * QS);
    const s = i32x4.add(sd(a0, a1, v128.load(c)), sd(b0, b1, v128.load(c, 16)));
    const t = i32x4.add(s, i32x4.shuffle(s, s, 2, 3, 0, 1));
    const S = i32x4.add(t, i32x4.shuffle(t, t, 1, 0, 3, 2));
    acc = blockTerm(Q8_0, acc, S, q + 32 * QS, h4raw(i32x4.splat(<i32>load<i16>(p + (k << 1)))));
  }
  return f32x4.extract_lane(acc, 0);
}

/** One row r of an interleaved matrix · the activation (a row gather: CATS's up rows). */
export function r4dotRow(type: i32, w: usize, rowBytes: usize, r: i32, qa: usize): f32 {
  if (type == Q8_0) return r4rowQ8(w + <usize>(r >> 2) * 4 * rowBytes, rowBytes, <usize>(r & 3), qa);
  const nb = <i32>(rowBytes / blockBytes(type));
  const sbBytes = 4 * blockBytes(type);
  const k = <usize>(r & 3);
  let p = w + <usize>(r >> 2) * 4 * rowBytes;
  let q = qa;
  let acc = f32x4.splat(0);
  let corr: f32 = 0;
  for (let b = 0; b < nb; b++, p += sbBytes, q += BLK32) {
    const M = q + 32 * QS;
    const xl = v128.load(q), xh = RELAXED ? xl : v128.load(q, 16);
    const xl2 = v128.load(q + 16 * QS), xh2 = RELAXED ? xl2 : v128.load(q + 16 * QS, 16);
    const d = f16(<u32>load<u16>(p + 2 * k));
    let s: v128;
    if (type == Q4_1) {
      const v = v128.load(p + 16 + (k << 4));
      s = pwiden(padd(pd(xl, xh, lo4(v)), pd(xl2, xh2, hi4(v))));
      corr += f16(<u32>load<u16>(p + 8 + 2 * k)) * load<f32>(M, 4);
    } else if (type == Q4_0) {
      const v = v128.load(p + 8 + (k << 4));
      s = i32x4.sub(pwiden(padd(pd(xl, xh, lo4(v)), pd(xl2, xh2, hi4(v)))), i32x4.splat(load<i32>(M, 4) << 1));
    } else {
      const v = v128.load(p + 24 + (k << 4));
      const qh = v128.load(p + 8);
      s = i32x4.sub(pwiden(padd(pd(xl, xh, v128.or(lo4(v), planeOf(qh, 2 * <i32>k))), pd(xl2, xh2, v128.or(hi4(v), planeOf(qh, 2 * <i32>k + 1))))), i32x4.splat(load<i32>(M, 4) << 2));
    }
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.splat(d * load<f32>(M))));
  }
  const t = f32x4.add(acc, i32x4.shuffle(acc, acc, 2, 3, 0, 1));
  return f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1) + corr;
}

/**
 * Rows rowIdx[i] for i in [i0, i1) of an interleaved matrix (out compacted, as qmatvec's gathers).
 * While a row is computed, the group of the row two ahead is touched (a gather is a read with
 * holes, which the memory system does not stream by itself; asm/q8.ts).
 */
export function r4gather(type: i32, w: usize, rowBytes: usize, rowIdx: usize, i0: i32, i1: i32, qa: usize, out: usize): void {
  const gb = 4 * rowBytes;
  let sink: u32 = 0;
  let touched: usize = -1;
  for (let i = i0; i < i1; i++) {
    const r = load<i32>(rowIdx + (<usize>i << 2));
    if (i + 2 < i1) {
      const r2 = load<i32>(rowIdx + (<usize>(i + 2) << 2));
      const g = <usize>(r2 >> 2);
      if (type == Q8_0) {
        // only the row's own lines: its scale and its 32 codes in each superblock
        const end = w + (g + 1) * gb;
        for (let p = w + g * gb, c = p + 8 + (<usize>(r2 & 3) << 5); p < end; p += 136, c += 136) sink += load<u8>(p) + load<u8>(c) + load<u8>(c, 31);
      } else if (g != touched) {
        touched = g;
        for (let p = w + g * gb; p < w + (g + 1) * gb; p += 64) sink += load<u8>(p);
      }
    }
    store<f32>(out + (<usize>i << 2), r4dotRow(type, w, rowBytes, r, qa));
  }
  // keeps the touches
  if (sink == 0xffffffff) store<f32>(out + (<usize>i0 << 2), 0);
}

/** The four rows' partial sums (P_r: row r's i16 or i32 partial-sum vector) → [S_r0, S_r1, S_r2, S_r3]. */
// @ts-ignore: decorator
@inline function rowSums(type: i32, P0: v128, P1: v128, P2: v128, P3: v128): v128 {
  if (type == Q5_0) return RELAXED ? tsum4w(P0, P1, P2, P3) : tsum4(P0, P1, P2, P3);
  return RELAXED ? tsum4s(P0, P1, P2, P3) : tsum4(P0, P1, P2, P3);
}

/**
 * Q8_0: the products of 16 signed weight codes with 16 activation codes, as i32x4. Relaxed build:
 * pmaddubsw wants one unsigned operand (< 128), so the activation's signs are moved onto the
 * weights — xu = |x| and xm = (x < 0) are made once per block for all four rows, leaving two
 * instructions per row to flip w where x is negative (codes are in [-127, 127], so −w fits).
 * Plain build: xu, xm are the activation's i16 halves.
 */
// @ts-ignore: decorator
@inline function sd(xu: v128, xm: v128, w: v128): v128 {
  if (RELAXED) return i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(w, xm), xm), xu));
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), xu), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), xm));
}

/**
 * sd's activation operands for the 16 codes of a Q8_0 activation at p, x = v128.load(p): with
 * relaxed SIMD |x| and its sign mask (the weights take the signs), else the codes widened to i16
 * (low eight, then high eight at p + 16).
 */
// @ts-ignore: decorator
@inline function xu(x: v128): v128 { return RELAXED ? i8x16.abs(x) : x; }
// @ts-ignore: decorator
@inline function xm(x: v128, p: usize): v128 { return RELAXED ? i8x16.lt_s(x, i8x16.splat(0)) : v128.load(p, 16); }

/** acc + this block's scaled sums for one token: (S − off)·d·dx — the order of every kernel here. */
// @ts-ignore: decorator
@inline function blockTerm(type: i32, acc: v128, S: v128, M: usize, d: v128): v128 {
  let s = S;
  // the activation's splat constants (asm/q8.ts): Σq at M + 32, d·2^112 at M + 16
  if (type == Q4_0) s = i32x4.sub(s, i32x4.shl(v128.load(M, 32), 3));
  else if (type == Q5_0) s = i32x4.sub(s, i32x4.shl(v128.load(M, 32), 4));
  return fma4(f32x4.convert_i32x4_s(s), f32x4.mul(d, v128.load(M, 16)), acc);
}

/**
 * Row groups [g0, g1) of Out = W·X for nTok tokens (activations at qa + t·qaStride): each group's
 * blocks are unpacked once for all tokens, each token's sums taken in r4matvec's order (so a
 * batch gives every row what a lone decode step gives it). Out[t·outStride + 4·(4g + r)] (bytes);
 * buf: r4matmulScratch(cols) bytes of this thread's own.
 */
export function r4matmul(type: i32, w: usize, rowBytes: usize, g0: i32, g1: i32, qa: usize, qaStride: usize, nTok: i32, Out: usize, outStride: usize, buf: usize): void {
  if (type == Q4_1) r4matmulK(Q4_1, w, rowBytes, g0, g1, qa, qaStride, nTok, Out, outStride, buf);
  else if (type == Q4_0) r4matmulK(Q4_0, w, rowBytes, g0, g1, qa, qaStride, nTok, Out, outStride, buf);
  else if (type == Q5_0) r4matmulK(Q5_0, w, rowBytes, g0, g1, qa, qaStride, nTok, Out, outStride, buf);
  else r4matmulK(Q8_0, w, rowBytes, g0, g1, qa, qaStride, nTok, Out, outStride, buf);
}

// Prefill, one row group at a time: the group's blocks are unpacked once into a buffer (codes,
// scale and min of each block, UNPACKED bytes; in L1 for the matrices here), then each token
// runs over them alone, one sum chain per token in registers. Four tokens per pass shared the
// unpacking too, but kept eight code vectors and four sums live: more than V8's sixteen vector
// registers, so the sums went through the stack in every block and the codes were reloaded after
// every token. Q8_0 needs no unpacking: its tokens read the group's weights (in L1 after the first).
// Each token's sums are those of the decode kernel (r4matvec): same blocks, same order, same bits.

/** bytes per block in the unpacked buffer: 8 code vectors, the rows' scales (f32·2^-112), their mins (Q4_1) */
const UNPACKED: usize = 160;

/** Scratch bytes r4matmul needs per thread for a matrix of `cols` columns. */
export function r4matmulScratch(cols: i32): usize {
  return <usize>(cols >> 5) * UNPACKED + 64;
}

/** Unpack the nb blocks of the row group at W0 into buf. */
// @ts-ignore: decorator
@inline function unpackGroup(type: i32, W0: usize, nb: i32, buf: usize): void {
  const sbBytes = 4 * blockBytes(type);
  const codes: usize = type == Q4_0 ? 8 : type == Q4_1 ? 16 : 24;
  let p = W0, c = buf;
  for (let b = 0; b < nb; b++, p += sbBytes, c += UNPACKED) {
    const qh = type == Q5_0 ? v128.load(p, 8) : i8x16.splat(0);
    const v0 = v128.load(p + codes), v1 = v128.load(p + codes + 16), v2 = v128.load(p + codes + 32), v3 = v128.load(p + codes + 48);
    v128.store(c, codeVec(type, v0, qh, 0)); v128.store(c, codeVec(type, v0, qh, 1), 16);
    v128.store(c, codeVec(type, v1, qh, 2), 32); v128.store(c, codeVec(type, v1, qh, 3), 48);
    v128.store(c, codeVec(type, v2, qh, 4), 64); v128.store(c, codeVec(type, v2, qh, 5), 80);
    v128.store(c, codeVec(type, v3, qh, 6), 96); v128.store(c, codeVec(type, v3, qh, 7), 112);
    const dm = type == Q4_1 ? v128.load(p) : v128.load64_zero(p);
    v128.store(c, h4raw(i32x4.extend_low_i16x8_s(dm)), 128);
    if (type == Q4_1) v128.store(c, h4raw(i32x4.extend_high_i16x8_s(dm)), 144);
  }
}

/** One token (activation at q) · the unpacked row group at buf: [y_r0, y_r1, y_r2, y_r3], r4matvecK's sums. */
// @ts-ignore: decorator
@inline function unpackedDot(type: i32, buf: usize, nb: i32, q: usize): v128 {
  let acc = f32x4.splat(0);
  let c = buf;
  for (let b = 0; b < nb; b++, c += UNPACKED, q += BLK32) {
    // each row's codes loaded just before they are used (as r4matvecK)
    const xl = v128.load(q), xh = RELAXED ? xl : v128.load(q, 16);
    const xl2 = v128.load(q + 16 * QS), xh2 = RELAXED ? xl2 : v128.load(q + 16 * QS, 16);
    const P0 = rowPart(xl, xh, xl2, xh2, v128.load(c), v128.load(c, 16));
    const P1 = rowPart(xl, xh, xl2, xh2, v128.load(c, 32), v128.load(c, 48));
    const P2 = rowPart(xl, xh, xl2, xh2, v128.load(c, 64), v128.load(c, 80));
    const P3 = rowPart(xl, xh, xl2, xh2, v128.load(c, 96), v128.load(c, 112));
    const S = rowSums(type, P0, P1, P2, P3);
    acc = blockTerm(type, acc, S, q + 32 * QS, v128.load(c, 128));
    if (type == Q4_1) acc = fma4(v128.load(c, 144), v128.load(q + 32 * QS, 32), acc);
  }
  return acc;
}

// one function per type: a loop of its own for the register allocator
function r4tokensQ4_1(buf: usize, nb: i32, qa: usize, S: usize, nTok: i32, o: usize, oS: usize): void {
  for (let t = 0; t < nTok; t++) v128.store(o + <usize>t * oS, unpackedDot(Q4_1, buf, nb, qa + <usize>t * S));
}
function r4tokensQ4_0(buf: usize, nb: i32, qa: usize, S: usize, nTok: i32, o: usize, oS: usize): void {
  for (let t = 0; t < nTok; t++) v128.store(o + <usize>t * oS, unpackedDot(Q4_0, buf, nb, qa + <usize>t * S));
}
function r4tokensQ5_0(buf: usize, nb: i32, qa: usize, S: usize, nTok: i32, o: usize, oS: usize): void {
  for (let t = 0; t < nTok; t++) v128.store(o + <usize>t * oS, unpackedDot(Q5_0, buf, nb, qa + <usize>t * S));
}
function r4tokensQ8_0(W0: usize, rowBytes: usize, qa: usize, S: usize, nTok: i32, o: usize, oS: usize): void {
  for (let t = 0; t < nTok; t++) v128.store(o + <usize>t * oS, r4groupQ8(W0, rowBytes, qa + <usize>t * S));
}

// @ts-ignore: decorator
@inline function r4matmulK(type: i32, w: usize, rowBytes: usize, g0: i32, g1: i32, qa: usize, qaStride: usize, nTok: i32, Out: usize, outStride: usize, buf: usize): void {
  const nb = <i32>(rowBytes / blockBytes(type));
  for (let g = g0; g < g1; g++) {
    const W0 = w + <usize>g * 4 * rowBytes;
    const o = Out + (<usize>g << 4);
    if (type == Q8_0) {
      r4tokensQ8_0(W0, rowBytes, qa, qaStride, nTok, o, outStride);
      continue;
    }
    unpackGroup(type, W0, nb, buf);
    if (type == Q4_1) r4tokensQ4_1(buf, nb, qa, qaStride, nTok, o, outStride);
    else if (type == Q4_0) r4tokensQ4_0(buf, nb, qa, qaStride, nTok, o, outStride);
    else r4tokensQ5_0(buf, nb, qa, qaStride, nTok, o, outStride);
  }
}
