// Input-channel sparsity: a transposed copy of a linear layer, so that the weights of one input
// channel are contiguous and a dropped channel's codes are never computed on.
//
// The copy keeps the original codes exact (4-bit, 5-bit for Q5_0, 6-bit for Q6_K) and the
// per-block scales: row-major ggml blocks run along the input dimension, each with a scale (and a
// min) per (output row, 32 inputs). Transposed, a "block" holds one tile of 32 output rows and one
// panel of 32 inputs (16 for Q6_K, whose scales are per 16), and the blocks are stored tile-major:
// tile 0's panels in order, then tile 1's, ... A block holds, in the order the kernel reads it:
//   d[32] (bf16), then (types with a min) m[32], then one run per input channel of the panel:
//   16 bytes of nibbles (byte k: row k low, row k+16 high), preceded by 4 bytes of 5th bits
//   (bit k = row k) for 5-bit codes; Q6_K: one code byte per row.
// Rp = rows rounded up to 32 (padding rows have scale 0). The scales are bfloat16 (widening is one
// shuffle per four); that rounding (≤ 2^-9 of a scale, for Q4_K / Q6_K of d·sc) is the layout's
// only change to the weights: bench/transposed-ppl.mjs measures what it costs.
//
// Why tile-major: a thread owns whole tiles (its rows), keeps their 32 sums in registers across
// all panels and reads its stretch of the copy as one forward stream, the dropped runs left as
// holes. The hardware prefetcher streams through holes of a few lines (so a half-dropped copy costs
// the memory time of a whole one: skipping pays in arithmetic, not in bytes; bytes would need whole
// skipped pages), and the split by rows stays balanced however uneven the kept set is. The first
// layouts (panel-major, threads splitting the kept channels, every line of the copy touched ahead
// by hand) spent as long on the per-panel scaling, the partial outputs and the touches as a dense
// mat-vec on everything: 1.2× dense time at half density.
//
// A mat-vec y = W·x over the kept channels: x is quantized to Q8_0 (int8 codes α, scale per 32)
// by `tprepare`; `tplan` pairs the kept channels of each panel; `tmatvec` walks its tiles and, for
// each active panel, multiplies two channels at once: their code bytes interleaved (row r: a, b)
// times (α_a, α_b) in one i16x8.relaxed_dot (pmaddubsw), summed in i16 over a few pairs (below
// overflow), then scaled into the tile's sums: y += d·ds·(Σ α·q − off·Σα) [+ m·ds·Σα].

import { f16, kMin, kScale, Q4_0, Q4_1, Q4_K, Q5_0, Q6_K } from './common';
import { ACT_Q8_0, BLK32, QS, quantizeAct, RELAXED } from './q8';

// layout kinds
const K_SYM4: i32 = 0; // Q4_0: w = d·(q − 8)
const K_MIN4: i32 = 1; // Q4_1, Q4_K: w = d·q + m
const K_SYM5: i32 = 2; // Q5_0: w = d·(q − 16)
const K_SYM6: i32 = 3; // Q6_K: w = d·sc·(q − 32), a scale per 16 inputs: panels of 16, one code byte per row

/** The layout kind for a weight type, or -1 when it has no transposed form. */
export function tkind(type: i32): i32 {
  if (type == Q4_0) return K_SYM4;
  if (type == Q4_1 || type == Q4_K) return K_MIN4;
  if (type == Q5_0) return K_SYM5;
  if (type == Q6_K) return K_SYM6;
  return -1;
}

/** Input channels per panel (one scale per row and panel). */
export function tpanelWidth(kind: i32): i32 { return kind == K_SYM6 ? 16 : 32; }
// @ts-ignore: decorator
@inline function tileBytes(kind: i32): usize { return kind == K_SYM5 ? 20 : kind == K_SYM6 ? 32 : 16; }
/** Scale bytes per row: d, and m for types with a min. */
// @ts-ignore: decorator
@inline function rowScaleBytes(kind: i32): usize { return kind == K_MIN4 ? 4 : 2; }
/** Bytes of a block (one tile of 32 rows × one panel). */
// @ts-ignore: decorator
@inline function blockBytes(kind: i32): usize { return 32 * rowScaleBytes(kind) + <usize>tpanelWidth(kind) * tileBytes(kind); }

/** Bytes of one panel (tpanelWidth input channels × Rp rows); the copy is cols / tpanelWidth of them. */
export function tpanelBytes(kind: i32, Rp: i32): usize {
  return (<usize>Rp >> 5) * blockBytes(kind);
}

/** The block of row r's tile and panel p, in a copy of nP panels at T. */
// @ts-ignore: decorator
@inline function blockAt(kind: i32, T: usize, nP: usize, r: i32, p: usize): usize {
  return T + ((<usize>r >> 5) * nP + p) * blockBytes(kind);
}
/** Where channel j's run starts in the block at blk. */
// @ts-ignore: decorator
@inline function runAt(kind: i32, blk: usize, j: usize): usize { return blk + 32 * rowScaleBytes(kind) + j * tileBytes(kind); }

/** f32 → bfloat16, rounded to nearest even (scales are finite) */
// @ts-ignore: decorator
@inline function bf16(f: f32): u16 {
  const b = reinterpret<u32>(f);
  return <u16>((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}
/** four bfloat16 (bytes 8h .. 8h+8 of v) to f32x4 */
// @ts-ignore: decorator
@inline function bf4(v: v128, h: i32): v128 {
  const z = i32x4.splat(0);
  return h == 0
    ? i8x16.shuffle(z, v, 0, 0, 16, 17, 0, 0, 18, 19, 0, 0, 20, 21, 0, 0, 22, 23)
    : i8x16.shuffle(z, v, 0, 0, 24, 25, 0, 0, 26, 27, 0, 0, 28, 29, 0, 0, 30, 31);
}

/** the f16 at p as f32 */
// @ts-ignore: decorator
@inline function h2f(p: usize): f32 { return f16(<u32>load<u16>(p)); }

/** Store code q (0..15, 0..31 or 0..63) of row k (of 32) into the tile at `tile`. */
// @ts-ignore: decorator
@inline function putCode(kind: i32, tile: usize, k: i32, q: u32): void {
  if (kind == K_SYM6) { store<u8>(tile + <usize>k, q); return; }
  let nib = tile + (kind == K_SYM5 ? 4 : 0) + <usize>(k & 15);
  const v = <u32>load<u8>(nib);
  store<u8>(nib, k < 16 ? (v & 0xf0) | (q & 15) : (v & 0x0f) | ((q & 15) << 4));
  if (kind == K_SYM5 && (q & 16) != 0) store<u32>(tile, load<u32>(tile) | (<u32>1 << k));
}
/**
 * Build the transposed copy of rows [r0, r1) of a row-major tensor (rows of rowBytes, cols
 * inputs) at dst (tpanelBytes × cols / tpanelWidth bytes, zeroed beforehand). Rows may be split
 * over calls, by whole tiles (the rows of a tile share their code bytes).
 */
export function tbuild(type: i32, src: usize, rowBytes: usize, cols: i32, r0: i32, r1: i32, dst: usize): void {
  const kind = tkind(type);
  const nP = <usize>(cols / tpanelWidth(kind));
  const nb = cols >> 5;
  for (let r = r0; r < r1; r++) {
    const row = src + <usize>r * rowBytes;
    const k = r & 31;
    if (type == Q6_K) {
      for (let s = 0; s < (cols >> 8); s++) {
        const o = row + <usize>s * 210;
        const d = h2f(o + 208);
        for (let g = 0; g < 16; g++) store<u16>(blockAt(kind, dst, nP, r, <usize>(s * 16 + g)) + (<usize>k << 1), bf16(d * <f32>load<i8>(o + 192 + <usize>g)));
        for (let i = 0; i < 256; i++) {
          const h = i >> 7, kk = (i >> 5) & 3, l = i & 31;
          const a = <u32>load<u8>(o + <usize>(h * 64 + l + (kk & 1) * 32));
          const qh = (<u32>load<u8>(o + 128 + <usize>(h * 32 + l)) >> <u32>(2 * kk)) & 3;
          putCode(kind, runAt(kind, blockAt(kind, dst, nP, r, <usize>(s * 16 + (i >> 4))), <usize>(i & 15)), k, ((kk >= 2 ? a >> 4 : a) & 15) | (qh << 4));
        }
      }
      continue;
    }
    for (let b = 0; b < nb; b++) {
      const blkT = blockAt(kind, dst, nP, r, <usize>b);
      const dAt = blkT + (<usize>k << 1), mAt = dAt + 64;
      if (type == Q4_K) {
        const sb256 = row + <usize>(b >> 3) * 144;
        const g = b & 7;
        store<u16>(dAt, bf16(h2f(sb256) * <f32>kScale(sb256 + 4, g)));
        store<u16>(mAt, bf16(-h2f(sb256 + 2) * <f32>kMin(sb256 + 4, g)));
        const qs = sb256 + 16 + <usize>(g >> 1) * 32;
        const sh: u32 = (g & 1) ? 4 : 0;
        for (let j = 0; j < 32; j++) putCode(kind, runAt(kind, blkT, <usize>j), k, (<u32>load<u8>(qs + j) >> sh) & 15);
        continue;
      }
      let blk: usize, qs: usize, qh: u32 = 0;
      if (type == Q4_0) { blk = row + <usize>b * 18; qs = blk + 2; }
      else if (type == Q4_1) { blk = row + <usize>b * 20; qs = blk + 4; store<u16>(mAt, bf16(h2f(blk + 2))); }
      else { blk = row + <usize>b * 22; qh = load<u32>(blk + 2); qs = blk + 6; }
      store<u16>(dAt, bf16(h2f(blk)));
      for (let j = 0; j < 16; j++) {
        const v = <u32>load<u8>(qs + j);
        putCode(kind, runAt(kind, blkT, <usize>j), k, (v & 15) | (((qh >> <u32>j) & 1) << 4));
        putCode(kind, runAt(kind, blkT, <usize>(j + 16)), k, (v >> 4) | (((qh >> <u32>(j + 16)) & 1) << 4));
      }
    }
  }
}

/** The second half of a pair record at p: channel b's run and the activations (α_a, α_b). */
// @ts-ignore: decorator
@inline function storePair(p: usize, runB: u32, a: i32, b: i32): void {
  store<u32>(p, runB, 4);
  store<u64>(p, 0, 8);
  v128.store(p, RELAXED ? i16x8.splat(<i16>((a & 0xff) | (b << 8))) : i32x4.splat((a & 0xffff) | (b << 16)), 16);
}

// Plan layout (i32 words): [nActive, pairsBase, nPairs, 0], then 8 words per active block:
//   panel index, first pair, number of pairs, ds (f32), ds·Σα (f32), off·Σα (i32), 0, 0
// A plan depends on the kept channels, the activation and the layout kind only, so the linears
// that share an input (q, k, v; gate, up) share one plan.
// then 8 words per pair: the offsets of channel a's and b's runs in a block, 0, 0, and (α_a, α_b) as the
// v128 pairDot takes (relaxed: i8 pairs in every i16 lane; plain: i16 pairs in every i32 lane).

/**
 * The activation of an input-sparse mat-vec: xs = x with only the channels idx[0..n) (ascending,
 * in 0..cols) kept, quantized to Q8_0 at qa. Returns -1, or the position in idx of the first
 * index that is out of range or not ascending (nothing is written then).
 */
export function tprepare(x: usize, cols: i32, idx: usize, n: i32, xs: usize, qa: usize): i32 {
  let prev = -1;
  for (let i = 0; i < n; i++) {
    const c = load<i32>(idx + (<usize>i << 2));
    if (c <= prev || c >= cols) return i;
    prev = c;
  }
  memory.fill(xs, 0, <usize>cols << 2);
  for (let i = 0; i < n; i++) {
    const o = <usize>load<i32>(idx + (<usize>i << 2)) << 2;
    store<f32>(xs + o, load<f32>(x + o));
  }
  quantizeAct(ACT_Q8_0, xs, cols, qa);
  return -1;
}

/** Bytes of a plan for `cols` inputs. */
export function tplanBytes(cols: i32): usize {
  const nb = <usize>(cols >> 4);
  return 16 + nb * 32 + (<usize>(cols >> 1) + nb) * 32;
}

/**
 * Plan a mat-vec over the kept input channels idx[0..n) (ascending) of transposed copies of a
 * kind with the Q8_0 activation qa (quantized from x with the dropped channels zeroed).
 */
export function tplan(kind: i32, cols: i32, qa: usize, idx: usize, n: i32, plan: usize): void {
  const tb = <u32>tileBytes(kind);
  const off: i32 = kind == K_SYM4 ? 8 : kind == K_SYM5 ? 16 : kind == K_SYM6 ? 32 : 0;
  const pwShift: i32 = kind == K_SYM6 ? 4 : 5;
  const pairsBase = plan + 16 + (<usize>cols >> <usize>pwShift) * 32;
  let nActive = 0, nPairs = 0;
  let i = 0;
  while (i < n) {
    const b = load<i32>(idx + (<usize>i << 2)) >> pwShift;
    // the Q8_0 block of 32 activations this panel lies in
    const qb = qa + <usize>(b >> (5 - pwShift)) * BLK32;
    const first = nPairs;
    let sum = 0, half = 0, pending = false;
    for (; i < n; i++) {
      const c = load<i32>(idx + (<usize>i << 2));
      if ((c >> pwShift) != b) break;
      const j = c & 31;
      const a: i32 = RELAXED ? <i32>load<i8>(qb + <usize>j) : <i32>load<i16>(qb + (<usize>j << 1));
      if (a == 0) continue;
      sum += a;
      const run = <u32>(c & ((1 << pwShift) - 1)) * tb;
      if (!pending) { half = a; pending = true; store<u32>(pairsBase + (<usize>nPairs << 5), run); continue; }
      storePair(pairsBase + (<usize>nPairs << 5), run, half, a);
      nPairs++;
      pending = false;
    }
    if (pending) {
      // an odd channel out: pair it with itself at weight 0
      const p = pairsBase + (<usize>nPairs << 5);
      storePair(p, load<u32>(p), half, 0);
      nPairs++;
    }
    if (nPairs == first) continue;
    const B = plan + 16 + (<usize>nActive << 5);
    const ds = load<f32>(qb + 32 * QS);
    store<u32>(B, <u32>b);
    store<i32>(B, first, 4);
    store<i32>(B, nPairs - first, 8);
    store<f32>(B, ds, 12);
    store<f32>(B, ds * <f32>sum, 16);
    store<i32>(B, off * sum, 20);
    nActive++;
  }
  store<i32>(plan, nActive);
  store<u32>(plan, <u32>pairsBase, 4);
  store<i32>(plan, nPairs, 8);
}

/** a·b + c, fused where relaxed SIMD allows it */
// @ts-ignore: decorator
@inline function fma4(a: v128, b: v128, c: v128): v128 {
  return RELAXED ? f32x4.relaxed_madd(a, b, c) : f32x4.add(f32x4.mul(a, b), c);
}

/** Pair sums for 8 rows: codes x interleaved by row (row r: a, b), times the pair's activations. */
// @ts-ignore: decorator
@inline function pairDot(alpha: v128, x: v128): v128 {
  if (RELAXED) return i16x8.relaxed_dot_i8x16_i7x16_s(alpha, x);
  // plain SIMD: the bytes widened to i16 pairs, dotted with (α_a, α_b) per i32 lane, narrowed back
  // (a pair's sum is at most 2·127·63, well inside i16)
  return i16x8.narrow_i32x4_s(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(x), alpha), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(x), alpha));
}

/**
 * Tiles [t0, t1) of y = W·x from the plan, over a copy at T of nP panels: rows 32·t0 .. 32·t1 of y
 * are written (not added to). A tile's 32 sums stay in registers across its active panels; on each
 * panel the pairs go in chunks small enough that their i16 sums cannot overflow (8 pairs of 4-bit
 * codes, 4 of 5-bit, 2 of 6-bit), summed in four registers per chunk, then widened, converted and
 * scaled into the sums: y += d·ds·(Σ α·q − off·Σα) [+ m·ds·Σα].
 */
export function tmatvec(kind: i32, plan: usize, T: usize, nP: i32, t0: i32, t1: i32, y: usize): void {
  if (kind == K_SYM4) tmatvecK(K_MIN4, plan, T, nP, t0, t1, y, false, 8);
  else if (kind == K_MIN4) tmatvecK(K_MIN4, plan, T, nP, t0, t1, y, true, 0);
  else if (kind == K_SYM5) tmatvecK(K_SYM5, plan, T, nP, t0, t1, y, false, 16);
  else tmatvecK(K_SYM6, plan, T, nP, t0, t1, y, false, 32);
}

/** y[j] += (sums in r, widened, plus init for codes with an offset, converted) · (d's four bf16 at half h of dv) · ds */
// @ts-ignore: decorator
@inline function scaleInto(yv: v128, r: v128, hi: bool, dv: v128, h: i32, ds: v128, init: v128, withInit: bool): v128 {
  let a = hi ? i32x4.extend_high_i16x8_s(r) : i32x4.extend_low_i16x8_s(r);
  if (withInit) a = i32x4.add(a, init);
  return fma4(f32x4.convert_i32x4_s(a), f32x4.mul(bf4(dv, h), ds), yv);
}

// @ts-ignore: decorator
@inline function tmatvecK(kind: i32, plan: usize, T: usize, nP: i32, t0: i32, t1: i32, y: usize, hasMin: bool, off: i32): void {
  const nActive = load<i32>(plan);
  const pairs = <usize>load<u32>(plan, 4);
  const chunk: usize = kind == K_SYM6 ? 2 : kind == K_SYM5 ? 4 : 8;
  const sb: usize = hasMin ? 128 : 64; // a block's scale bytes (Q4_0 shares K_MIN4's codes, without m's)
  const BB = sb + <usize>tpanelWidth(kind) * tileBytes(kind);
  const m4 = i8x16.splat(0x0f), m5 = i8x16.splat(0x10);
  const zero = i32x4.splat(0);
  for (let t = t0; t < t1; t++) {
    const tileAt = T + <usize>t * <usize>nP * BB;
    let y0 = f32x4.splat(0), y1 = y0, y2 = y0, y3 = y0, y4 = y0, y5 = y0, y6 = y0, y7 = y0;
    for (let k = 0; k < nActive; k++) {
      const B = plan + 16 + (<usize>k << 5);
      const blk = tileAt + <usize>load<u32>(B) * BB;
      const runs = blk + sb;
      const p0 = pairs + (<usize>load<i32>(B, 4) << 5);
      const pEnd = p0 + (<usize>load<i32>(B, 8) << 5);
      const ds = f32x4.splat(load<f32>(B, 12));
      const d0 = v128.load(blk), d1 = v128.load(blk, 16), d2 = v128.load(blk, 32), d3 = v128.load(blk, 48);
      if (hasMin) {
        const c = f32x4.splat(load<f32>(B, 16));
        const m0 = v128.load(blk, 64), m1 = v128.load(blk, 80), m2 = v128.load(blk, 96), m3 = v128.load(blk, 112);
        y0 = fma4(bf4(m0, 0), c, y0); y1 = fma4(bf4(m0, 1), c, y1);
        y2 = fma4(bf4(m1, 0), c, y2); y3 = fma4(bf4(m1, 1), c, y3);
        y4 = fma4(bf4(m2, 0), c, y4); y5 = fma4(bf4(m2, 1), c, y5);
        y6 = fma4(bf4(m3, 0), c, y6); y7 = fma4(bf4(m3, 1), c, y7);
      }
      // −off·Σα, added to the first chunk's sums
      let init = i32x4.splat(-load<i32>(B, 20));
      for (let p = p0; p < pEnd; p += chunk << 5) {
        const cEnd = min(pEnd, p + (chunk << 5));
        let r0 = zero, r1 = zero, r2 = zero, r3 = zero; // rows 0–7, 8–15, 16–23, 24–31
        for (let q = p; q < cEnd; q += 32) {
          const ca = runs + <usize>load<u32>(q), cb = runs + <usize>load<u32>(q, 4);
          const alpha = v128.load(q, 16);
          if (kind == K_MIN4) {
            // interleave the packed bytes first (byte k: row k low nibble, row k+16 high), then split nibbles
            const A = v128.load(ca), Bv = v128.load(cb);
            const u0 = i8x16.shuffle(A, Bv, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            const u1 = i8x16.shuffle(A, Bv, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            r0 = i16x8.add(r0, pairDot(alpha, v128.and(u0, m4)));
            r1 = i16x8.add(r1, pairDot(alpha, v128.and(u1, m4)));
            r2 = i16x8.add(r2, pairDot(alpha, v128.and(i16x8.shr_u(u0, 4), m4)));
            r3 = i16x8.add(r3, pairDot(alpha, v128.and(i16x8.shr_u(u1, 4), m4)));
          } else if (kind == K_SYM5) {
            // as 4-bit, plus the 5th bits: the two channels' bit words side by side, each byte
            // spread over the 8 interleaved rows it covers, tested against that row's bit
            const A = v128.load(ca, 4), Bv = v128.load(cb, 4);
            const u0 = i8x16.shuffle(A, Bv, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            const u1 = i8x16.shuffle(A, Bv, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            const qb = i32x4.replace_lane(i32x4.splat(load<i32>(ca)), 1, load<i32>(cb));
            const bit = i8x16(1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, -128, -128);
            const h0 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(qb, i8x16(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4)), bit), bit), m5);
            const h1 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(qb, i8x16(1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5)), bit), bit), m5);
            const h2 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(qb, i8x16(2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6)), bit), bit), m5);
            const h3 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(qb, i8x16(3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7)), bit), bit), m5);
            r0 = i16x8.add(r0, pairDot(alpha, v128.or(v128.and(u0, m4), h0)));
            r1 = i16x8.add(r1, pairDot(alpha, v128.or(v128.and(u1, m4), h1)));
            r2 = i16x8.add(r2, pairDot(alpha, v128.or(v128.and(i16x8.shr_u(u0, 4), m4), h2)));
            r3 = i16x8.add(r3, pairDot(alpha, v128.or(v128.and(i16x8.shr_u(u1, 4), m4), h3)));
          } else {
            const la = v128.load(ca), ha = v128.load(ca, 16), lb = v128.load(cb), hb = v128.load(cb, 16);
            r0 = i16x8.add(r0, pairDot(alpha, i8x16.shuffle(la, lb, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)));
            r1 = i16x8.add(r1, pairDot(alpha, i8x16.shuffle(la, lb, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)));
            r2 = i16x8.add(r2, pairDot(alpha, i8x16.shuffle(ha, hb, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)));
            r3 = i16x8.add(r3, pairDot(alpha, i8x16.shuffle(ha, hb, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)));
          }
        }
        y0 = scaleInto(y0, r0, false, d0, 0, ds, init, off != 0); y1 = scaleInto(y1, r0, true, d0, 1, ds, init, off != 0);
        y2 = scaleInto(y2, r1, false, d1, 0, ds, init, off != 0); y3 = scaleInto(y3, r1, true, d1, 1, ds, init, off != 0);
        y4 = scaleInto(y4, r2, false, d2, 0, ds, init, off != 0); y5 = scaleInto(y5, r2, true, d2, 1, ds, init, off != 0);
        y6 = scaleInto(y6, r3, false, d3, 0, ds, init, off != 0); y7 = scaleInto(y7, r3, true, d3, 1, ds, init, off != 0);
        init = zero;
      }
    }
    const yt = y + (<usize>t << 7);
    v128.store(yt, y0, 0); v128.store(yt, y1, 16); v128.store(yt, y2, 32); v128.store(yt, y3, 48);
    v128.store(yt, y4, 64); v128.store(yt, y5, 80); v128.store(yt, y6, 96); v128.store(yt, y7, 112);
  }
}
