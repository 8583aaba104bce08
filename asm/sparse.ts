// Input-channel sparsity: a transposed copy of a linear layer, so that the weights of one input
// channel are contiguous and a dropped channel's codes are never computed on.
//
// The copy keeps the original codes exact (4-bit, 5-bit for Q5_0, 6-bit for Q6_K) and the
// per-block scales: row-major ggml blocks run along the input dimension, each with a scale (and a
// min) per (output row, 32 inputs). Transposed, a "panel" holds one 32-input block for all rows,
// cut into groups of GT tiles of 32 rows (128 rows; the last group of a panel may be shorter).
// A group of nt tiles is contiguous and holds, in the order the kernel reads it:
//   d[32·nt] (bf16), then (types with a min) m[32·nt], then one run per input channel of the panel,
//   nt tiles of 32 rows each: 16 bytes of nibbles (byte k: row k low, row k+16 high), preceded by
//   4 bytes of 5th bits (bit k = row k) for 5-bit codes; Q6_K: panels of 16 inputs (its scales
//   are per 16), one code byte per row.
// Rp = rows rounded up to 32 (padding rows have scale 0). The scales are bfloat16 (widening is one
// shuffle per four); that rounding (≤ 2^-9 of a scale, for Q4_K / Q6_K of d·sc) is the layout's
// only change to the weights: bench/transposed-ppl.mjs measures what it costs.
//
// Why groups, read whole: the memory system streams a forward read ahead of the core, but not a
// read with holes. Reading only the kept runs (half the bytes at half density) ran slower than
// dense, each run arriving at DRAM latency; the first layout (a whole column per channel, the
// scales apart) was 1.4× slower than dense at half density. So tmatvec touches every line of the
// next group it will read while it computes the current one, and computes only the kept runs:
// the gain is the skipped arithmetic (dense kernels here are compute-bound at ~7 GB/s a thread).
//
// A mat-vec y = W·x over the kept channels: x is quantized to Q8_0 (int8 codes α, scale per 32)
// by `tprepare`; `tplan` pairs the kept channels of each block; `tmatvec` walks the active blocks'
// groups and multiplies two channels at once: their code bytes interleaved (row r: a, b) times
// (α_a, α_b) in one i16x8.relaxed_dot (pmaddubsw), summed in i16 over a few pairs (below
// overflow), widened to i32, then scaled per row: y += d·ds·(Σ α·q − off·Σα) [+ m·ds·Σα].
// Threads split the (pair, tile) units, each streaming its own stretch of the copy into its own
// partial output.

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
/** Tiles (of 32 rows) per group. */
const GT: usize = 4;
// @ts-ignore: decorator
@inline function tileBytes(kind: i32): usize { return kind == K_SYM5 ? 20 : kind == K_SYM6 ? 32 : 16; }
/** Scale bytes per row: d, and m for types with a min. */
// @ts-ignore: decorator
@inline function rowScaleBytes(kind: i32): usize { return kind == K_MIN4 ? 4 : 2; }
/** Bytes of a group of nt tiles. */
// @ts-ignore: decorator
@inline function groupBytes(kind: i32, nt: usize): usize {
  return nt * (32 * rowScaleBytes(kind) + <usize>tpanelWidth(kind) * tileBytes(kind));
}

/** Bytes of one panel (tpanelWidth input channels × Rp rows). */
export function tpanelBytes(kind: i32, Rp: i32): usize {
  return groupBytes(kind, <usize>Rp >> 5);
}

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

/**
 * Where row r of a panel at P (nTiles tiles) lives: its group's address, the group's tile count,
 * and the row within the group.
 */
// @ts-ignore: decorator
@inline function groupAt(kind: i32, P: usize, nTiles: usize, r: i32): usize {
  return P + (<usize>r / (GT << 5)) * groupBytes(kind, GT);
}
// @ts-ignore: decorator
@inline function groupTiles(nTiles: usize, r: i32): usize { return min(GT, nTiles - (<usize>r / (GT << 5)) * GT); }

/** Where row r's codes start in the panel at P (channel 0's run; channel j's is j·runStride further). */
// @ts-ignore: decorator
@inline function codeBase(kind: i32, P: usize, nTiles: usize, r: i32): usize {
  const nt = groupTiles(nTiles, r);
  return groupAt(kind, P, nTiles, r) + nt * 32 * rowScaleBytes(kind) + ((<usize>r >> 5) & (GT - 1)) * tileBytes(kind);
}
/** Bytes from one channel's run to the next in row r's group. */
// @ts-ignore: decorator
@inline function runStride(kind: i32, nTiles: usize, r: i32): usize { return groupTiles(nTiles, r) * tileBytes(kind); }

/** Store code q (0..15, 0..31 or 0..63) of row k (of 32) into the tile at `tile`. */
// @ts-ignore: decorator
@inline function putCode(kind: i32, tile: usize, k: i32, q: u32): void {
  if (kind == K_SYM6) { store<u8>(tile + <usize>k, q); return; }
  let nib = tile + (kind == K_SYM5 ? 4 : 0) + <usize>(k & 15);
  const v = <u32>load<u8>(nib);
  store<u8>(nib, k < 16 ? (v & 0xf0) | (q & 15) : (v & 0x0f) | ((q & 15) << 4));
  if (kind == K_SYM5 && (q & 16) != 0) store<u32>(tile, load<u32>(tile) | (<u32>1 << k));
}
/** Address of row r's d in the panel at P (its m follows the group's d's). */
// @ts-ignore: decorator
@inline function dAddr(kind: i32, P: usize, nTiles: usize, r: i32): usize {
  return groupAt(kind, P, nTiles, r) + ((<usize>r % (GT << 5)) << 1);
}
// @ts-ignore: decorator
@inline function mAddr(kind: i32, P: usize, nTiles: usize, r: i32): usize {
  return dAddr(kind, P, nTiles, r) + (groupTiles(nTiles, r) << 6);
}

/**
 * Build the transposed copy of rows [r0, r1) of a row-major tensor (R rows of rowBytes, cols
 * inputs) at dst (tpanelBytes × cols/32 bytes, zeroed beforehand). Rows may be split over calls.
 */
export function tbuild(type: i32, src: usize, rowBytes: usize, R: i32, cols: i32, r0: i32, r1: i32, dst: usize): void {
  const kind = tkind(type);
  const Rp = <usize>((R + 31) & ~31);
  const panel = tpanelBytes(kind, <i32>Rp);
  const nTiles = Rp >> 5;
  const nb = cols >> 5;
  for (let r = r0; r < r1; r++) {
    const row = src + <usize>r * rowBytes;
    if (type == Q6_K) {
      for (let s = 0; s < (cols >> 8); s++) {
        const o = row + <usize>s * 210;
        const d = h2f(o + 208);
        for (let g = 0; g < 16; g++) store<u16>(dAddr(kind, dst + <usize>(s * 16 + g) * panel, nTiles, r), bf16(d * <f32>load<i8>(o + 192 + <usize>g)));
        const base = codeBase(kind, dst + <usize>(s * 16) * panel, nTiles, r), stride = runStride(kind, nTiles, r);
        for (let i = 0; i < 256; i++) {
          const h = i >> 7, k = (i >> 5) & 3, l = i & 31;
          const a = <u32>load<u8>(o + <usize>(h * 64 + l + (k & 1) * 32));
          const qh = (<u32>load<u8>(o + 128 + <usize>(h * 32 + l)) >> <u32>(2 * k)) & 3;
          putCode(kind, base + <usize>(i >> 4) * panel + <usize>(i & 15) * stride, r & 31, ((k >= 2 ? a >> 4 : a) & 15) | (qh << 4));
        }
      }
      continue;
    }
    const base0 = codeBase(kind, dst, nTiles, r), stride = runStride(kind, nTiles, r), k = r & 31;
    for (let b = 0; b < nb; b++) {
      const P = dst + <usize>b * panel;
      const base = base0 + <usize>b * panel;
      const dAt = dAddr(kind, P, nTiles, r), mAt = mAddr(kind, P, nTiles, r);
      if (type == Q4_K) {
        const sb256 = row + <usize>(b >> 3) * 144;
        const g = b & 7;
        store<u16>(dAt, bf16(h2f(sb256) * <f32>kScale(sb256 + 4, g)));
        store<u16>(mAt, bf16(-h2f(sb256 + 2) * <f32>kMin(sb256 + 4, g)));
        const qs = sb256 + 16 + <usize>(g >> 1) * 32;
        const sh: u32 = (g & 1) ? 4 : 0;
        for (let j = 0; j < 32; j++) putCode(kind, base + <usize>j * stride, k, (<u32>load<u8>(qs + j) >> sh) & 15);
        continue;
      }
      let blk: usize, qs: usize, qh: u32 = 0;
      if (type == Q4_0) { blk = row + <usize>b * 18; qs = blk + 2; }
      else if (type == Q4_1) { blk = row + <usize>b * 20; qs = blk + 4; store<u16>(mAt, bf16(h2f(blk + 2))); }
      else { blk = row + <usize>b * 22; qh = load<u32>(blk + 2); qs = blk + 6; }
      store<u16>(dAt, bf16(h2f(blk)));
      for (let j = 0; j < 16; j++) {
        const v = <u32>load<u8>(qs + j);
        putCode(kind, base + <usize>j * stride, k, (v & 15) | (((qh >> <u32>j) & 1) << 4));
        putCode(kind, base + <usize>(j + 16) * stride, k, (v >> 4) | (((qh >> <u32>(j + 16)) & 1) << 4));
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
// then 8 words per pair: channel a's and b's place in the panel times the tile bytes (a run of a
// group of nt tiles starts at that times nt), 0, 0, and (α_a, α_b) as the
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

/** The pairs of a plan (a mat-vec's work units are (pair, tile) couples). */
export function tplanPairs(plan: usize): i32 { return load<i32>(plan, 8); }

/**
 * Units [u0, u1) of y = W·x from the plan: a unit is one pair of kept channels on one tile of 32
 * rows, and a thread takes the pairs whose first unit falls in its range — so each thread reads a
 * contiguous stretch of the copy, panel after panel, as one forward stream (split by rows, the two
 * threads' streams interleaved panel by panel and ran a quarter slower than one thread alone). Its
 * sums over all Rp rows are added into y; the host adds the threads' y's.
 * Each active block is walked group by group; on each tile the block's pairs go in chunks small
 * enough that their i16 sums cannot overflow (8 pairs of 4-bit codes, 4 of 5-bit, 2 of 6-bit),
 * summed in four registers per chunk and widened into eight i32 ones, then scaled into y:
 * y += d·ds·(Σ α·q − off·Σα) [+ m·ds·Σα] (the constant terms by the thread with the block's first pair).
 */
export function tmatvec(kind: i32, plan: usize, T: usize, Rp: i32, u0: i32, u1: i32, y: usize, scratch: usize): void {
  if (kind == K_SYM4 || kind == K_MIN4) tmatvecK(K_MIN4, plan, T, Rp, u0, u1, y, scratch, kind == K_MIN4);
  else if (kind == K_SYM5) tmatvecK(K_SYM5, plan, T, Rp, u0, u1, y, scratch, false);
  else tmatvecK(K_SYM6, plan, T, Rp, u0, u1, y, scratch, false);
}

// @ts-ignore: decorator
@inline function tmatvecK(kind: i32, plan: usize, T: usize, Rp: i32, u0: i32, u1: i32, y: usize, scratch: usize, hasMin: bool): void {
  const nActive = load<i32>(plan);
  const pairs = <usize>load<u32>(plan, 4);
  const tb = tileBytes(kind);
  const chunk: usize = kind == K_SYM6 ? 2 : kind == K_SYM5 ? 4 : 8;
  const nTiles = <usize>Rp >> 5;
  const tileGroupBytes = 32 * <usize>(hasMin ? 4 : 2) + <usize>tpanelWidth(kind) * tb; // a group's bytes per tile (Q4_0 shares K_MIN4's code, without m's)
  const panel = nTiles * tileGroupBytes;
  const fullGroup = GT * tileGroupBytes;
  const nGroups = (nTiles + GT - 1) / GT;
  const pLo = (u0 + <i32>nTiles - 1) / <i32>nTiles, pHi = (u1 + <i32>nTiles - 1) / <i32>nTiles;
  const m4 = i8x16.splat(0x0f), m5 = i8x16.splat(0x10);
  const zero = i32x4.splat(0);
  let sink: u32 = 0;
  for (let k = 0; k < nActive; k++) {
    const B = plan + 16 + (<usize>k << 5);
    const first = load<i32>(B, 4), cnt = load<i32>(B, 8);
    if (first + cnt <= pLo) continue;
    if (first >= pHi) break;
    const owner = first >= pLo;
    const P = T + <usize>load<u32>(B) * panel;
    const p0 = pairs + (<usize>max(first, pLo) << 5);
    const pEnd = pairs + (<usize>min(first + cnt, pHi) << 5);
    const init = i32x4.splat(owner ? -load<i32>(B, 20) : 0);
    const ds = f32x4.splat(load<f32>(B, 12));
    const c = f32x4.splat(owner ? load<f32>(B, 16) : 0);
    // the next block this thread reads (for the touches of its first group)
    const nextP = k + 1 < nActive && load<i32>(B, 32 + 4) < pHi ? T + <usize>load<u32>(B, 32) * panel : 0;
    for (let g: usize = 0; g < nGroups; g++) {
      const gs = g * GT;
      const nt = min(GT, nTiles - gs);
      const G = P + g * fullGroup;
      const runs = G + nt * 32 * <usize>(hasMin ? 4 : 2);
      // The memory system streams a forward read ahead of the core, but not one with holes: the
      // kept runs alone arrive at latency (half-sparse layers read half the bytes yet ran slower
      // than dense ones). So, spread over this group's tile iterations, every line of the next
      // group this thread reads is touched, kept or not: the reads stay one forward stream, the
      // touches overlap the arithmetic, and only the kept runs are computed.
      let cur: usize = 0, curEnd: usize = 0;
      if (g + 1 < nGroups) { cur = G + fullGroup; curEnd = cur + min(GT, nTiles - gs - GT) * tileGroupBytes; }
      else if (nextP) { cur = nextP; curEnd = cur + min(GT, nTiles) * tileGroupBytes; }
      const iters = ((pEnd - p0 + (chunk << 5) - 32) / (chunk << 5)) * nt;
      const perIter = (((curEnd - cur) >> 6) + iters - 1) / iters;
      // tile by tile: i32 sums of its 32 rows in a0..a7, over the pairs chunk by chunk
      for (let t = gs; t < gs + nt; t++) {
        const off = runs + (t - gs) * tb;
        let a0 = init, a1 = init, a2 = init, a3 = init, a4 = init, a5 = init, a6 = init, a7 = init;
        for (let p = p0; p < pEnd; p += chunk << 5) {
          const cEnd = min(pEnd, p + (chunk << 5));
          for (let u: usize = 0; u < perIter && cur < curEnd; u++, cur += 64) sink += load<u8>(cur);
            let r0 = zero, r1 = zero, r2 = zero, r3 = zero; // rows 0–7, 8–15, 16–23, 24–31
            for (let q = p; q < cEnd; q += 32) {
              const ca = off + <usize>load<u32>(q) * nt, cb = off + <usize>load<u32>(q, 4) * nt;
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
                const q = i32x4.replace_lane(i32x4.splat(load<i32>(ca)), 1, load<i32>(cb));
                const bit = i8x16(1, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32, 32, 64, 64, -128, -128);
                const h0 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(q, i8x16(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4)), bit), bit), m5);
                const h1 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(q, i8x16(1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5, 1, 5)), bit), bit), m5);
                const h2 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(q, i8x16(2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6, 2, 6)), bit), bit), m5);
                const h3 = v128.and(i8x16.eq(v128.and(i8x16.swizzle(q, i8x16(3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7, 3, 7)), bit), bit), m5);
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
          a0 = i32x4.add(a0, i32x4.extend_low_i16x8_s(r0)); a1 = i32x4.add(a1, i32x4.extend_high_i16x8_s(r0));
          a2 = i32x4.add(a2, i32x4.extend_low_i16x8_s(r1)); a3 = i32x4.add(a3, i32x4.extend_high_i16x8_s(r1));
          a4 = i32x4.add(a4, i32x4.extend_low_i16x8_s(r2)); a5 = i32x4.add(a5, i32x4.extend_high_i16x8_s(r2));
          a6 = i32x4.add(a6, i32x4.extend_low_i16x8_s(r3)); a7 = i32x4.add(a7, i32x4.extend_high_i16x8_s(r3));
        }
        // y += d·ds·sums [+ m·ds·Σα], the d's (and m's) of the group's rows at its head
        const yt = y + (t << 7), d = G + ((t - gs) << 6), m = d + (nt << 6);
        const d0 = v128.load(d), d1 = v128.load(d, 16), d2 = v128.load(d, 32), d3 = v128.load(d, 48);
        let y0 = fma4(f32x4.convert_i32x4_s(a0), f32x4.mul(bf4(d0, 0), ds), v128.load(yt, 0));
        let y1 = fma4(f32x4.convert_i32x4_s(a1), f32x4.mul(bf4(d0, 1), ds), v128.load(yt, 16));
        let y2 = fma4(f32x4.convert_i32x4_s(a2), f32x4.mul(bf4(d1, 0), ds), v128.load(yt, 32));
        let y3 = fma4(f32x4.convert_i32x4_s(a3), f32x4.mul(bf4(d1, 1), ds), v128.load(yt, 48));
        let y4 = fma4(f32x4.convert_i32x4_s(a4), f32x4.mul(bf4(d2, 0), ds), v128.load(yt, 64));
        let y5 = fma4(f32x4.convert_i32x4_s(a5), f32x4.mul(bf4(d2, 1), ds), v128.load(yt, 80));
        let y6 = fma4(f32x4.convert_i32x4_s(a6), f32x4.mul(bf4(d3, 0), ds), v128.load(yt, 96));
        let y7 = fma4(f32x4.convert_i32x4_s(a7), f32x4.mul(bf4(d3, 1), ds), v128.load(yt, 112));
        if (hasMin) {
          const m0 = v128.load(m), m1 = v128.load(m, 16), m2 = v128.load(m, 32), m3 = v128.load(m, 48);
          y0 = fma4(bf4(m0, 0), c, y0); y1 = fma4(bf4(m0, 1), c, y1);
          y2 = fma4(bf4(m1, 0), c, y2); y3 = fma4(bf4(m1, 1), c, y3);
          y4 = fma4(bf4(m2, 0), c, y4); y5 = fma4(bf4(m2, 1), c, y5);
          y6 = fma4(bf4(m3, 0), c, y6); y7 = fma4(bf4(m3, 1), c, y7);
        }
        v128.store(yt, y0, 0); v128.store(yt, y1, 16); v128.store(yt, y2, 32); v128.store(yt, y3, 48);
        v128.store(yt, y4, 64); v128.store(yt, y5, 80); v128.store(yt, y6, 96); v128.store(yt, y7, 112);
      }
    }
  }
  store<u32>(scratch, sink); // keeps the touches
}

/** Scratch bytes per thread for tmatvec. */
export function tscratchBytes(Rp: i32): usize { return 64; }
