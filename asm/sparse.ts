// Input-channel sparsity that skips bytes: a transposed copy of a linear layer, so that the
// weights of one input channel are contiguous and a dropped channel is never read.
//
// The copy keeps the original codes exactly (4-bit, 5-bit for Q5_0, 6-bit for Q6_K) and the
// per-block scales: row-major ggml blocks run along the input dimension, each with a scale (and a
// min) per (output row, 32 inputs). Transposed, a "panel" holds one 32-input block for all rows:
//   d[Rp], then (types with a min) m[Rp], then 32 column segments, one per input channel,
//   each Rp/32 tiles of 32 rows: 16 bytes of nibbles (byte k: row k low, row k+16 high), preceded
//   by 4 bytes of 5th bits (bit k = row k) for 5-bit codes; Q6_K: panels of 16 inputs (its scales
//   are per 16), one code byte per row.
// Rp = rows rounded up to 32 (padding rows have scale 0). The scales are bfloat16: every active
// panel's scales are read whatever the kept share of its channels, so their bytes count (f32 ones
// made a half-sparse Q4_1 layer read 78% of its dense bytes, bf16 ones 58%), and widening bf16 is
// one shuffle per four. That rounding (≤ 2^-9 of a scale, for Q4_K / Q6_K of d·sc) is the layout's
// only change to the weights: bench/transposed-ppl.mjs measures what it costs.
//
// A mat-vec y = W·x over the kept channels: x is quantized to Q8_0 (int8 codes α, scale per 32);
// `tplan` pairs the kept channels of each block; `tmatvec` walks each active block's pairs and,
// down the pair's segments, multiplies two channels at once: their code bytes interleaved (row r:
// a, b) times (α_a, α_b) in one i16x8.relaxed_dot (pmaddubsw), summed in i16 (a few pairs, below
// overflow), widened to i32, then scaled per row: y += d·ds·(Σ α·q − off·Σα) [+ m·ds·Σα].
// Work per tile is the same for every tile, so splitting tiles evenly over threads stays balanced
// whatever the kept set.

import { f16, kMin, kScale, Q4_0, Q4_1, Q4_K, Q5_0, Q6_K, qhMask } from './common';
import { BLK32, hi4, lo4, QS, RELAXED } from './q8';

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
// @ts-ignore: decorator
@inline function scaleBytes(kind: i32, Rp: usize): usize { return Rp * (kind == K_MIN4 ? 4 : 2); }
// @ts-ignore: decorator
@inline function segBytes(kind: i32, Rp: usize): usize { return (Rp >> 5) * tileBytes(kind); }

/** Bytes of one panel (tpanelWidth input channels × Rp rows). */
export function tpanelBytes(kind: i32, Rp: i32): usize {
  return scaleBytes(kind, <usize>Rp) + <usize>tpanelWidth(kind) * segBytes(kind, <usize>Rp);
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

/** Store code q (0..15 or 0..31) of row r, input channel j (0..31) into the panel at P. */
// @ts-ignore: decorator
@inline function putCode(kind: i32, seg0: usize, seg: usize, r: i32, j: i32, q: u32): void {
  const tb = tileBytes(kind);
  const tile = seg0 + <usize>j * seg + <usize>(r >> 5) * tb;
  const k = r & 31;
  if (kind == K_SYM6) { store<u8>(tile + <usize>k, q); return; }
  let nib = tile + (kind == K_SYM5 ? 4 : 0) + <usize>(k & 15);
  const v = <u32>load<u8>(nib);
  store<u8>(nib, k < 16 ? (v & 0xf0) | (q & 15) : (v & 0x0f) | ((q & 15) << 4));
  if (kind == K_SYM5 && (q & 16) != 0) store<u32>(tile, load<u32>(tile) | (<u32>1 << k));
}

/**
 * Build the transposed copy of rows [r0, r1) of a row-major tensor (R rows of rowBytes, cols
 * inputs) at dst (tpanelBytes × cols/32 bytes, zeroed beforehand). Rows may be split over calls.
 */
export function tbuild(type: i32, src: usize, rowBytes: usize, R: i32, cols: i32, r0: i32, r1: i32, dst: usize): void {
  const kind = tkind(type);
  const Rp = <usize>((R + 31) & ~31);
  const panel = tpanelBytes(kind, <i32>Rp);
  const seg = segBytes(kind, Rp);
  const sb = scaleBytes(kind, Rp);
  const nb = cols >> 5;
  for (let r = r0; r < r1; r++) {
    const row = src + <usize>r * rowBytes;
    if (type == Q6_K) {
      for (let s = 0; s < (cols >> 8); s++) {
        const o = row + <usize>s * 210;
        const d = h2f(o + 208);
        for (let g = 0; g < 16; g++) store<u16>(dst + <usize>(s * 16 + g) * panel + (<usize>r << 1), bf16(d * <f32>load<i8>(o + 192 + <usize>g)));
        for (let i = 0; i < 256; i++) {
          const h = i >> 7, k = (i >> 5) & 3, l = i & 31;
          const a = <u32>load<u8>(o + <usize>(h * 64 + l + (k & 1) * 32));
          const qh = (<u32>load<u8>(o + 128 + <usize>(h * 32 + l)) >> <u32>(2 * k)) & 3;
          const P = dst + <usize>(s * 16 + (i >> 4)) * panel;
          putCode(kind, P + sb, seg, r, i & 15, ((k >= 2 ? a >> 4 : a) & 15) | (qh << 4));
        }
      }
      continue;
    }
    for (let b = 0; b < nb; b++) {
      const P = dst + <usize>b * panel;
      const seg0 = P + sb;
      const dAt = P + (<usize>r << 1), mAt = P + (Rp << 1) + (<usize>r << 1);
      if (type == Q4_K) {
        const sb256 = row + <usize>(b >> 3) * 144;
        const g = b & 7;
        store<u16>(dAt, bf16(h2f(sb256) * <f32>kScale(sb256 + 4, g)));
        store<u16>(mAt, bf16(-h2f(sb256 + 2) * <f32>kMin(sb256 + 4, g)));
        const qs = sb256 + 16 + <usize>(g >> 1) * 32;
        const sh: u32 = (g & 1) ? 4 : 0;
        for (let j = 0; j < 32; j++) putCode(kind, seg0, seg, r, j, (<u32>load<u8>(qs + j) >> sh) & 15);
        continue;
      }
      let blk: usize, qs: usize, qh: u32 = 0;
      if (type == Q4_0) { blk = row + <usize>b * 18; qs = blk + 2; }
      else if (type == Q4_1) { blk = row + <usize>b * 20; qs = blk + 4; store<u16>(mAt, bf16(h2f(blk + 2))); }
      else { blk = row + <usize>b * 22; qh = load<u32>(blk + 2); qs = blk + 6; }
      store<u16>(dAt, bf16(h2f(blk)));
      for (let j = 0; j < 16; j++) {
        const v = <u32>load<u8>(qs + j);
        putCode(kind, seg0, seg, r, j, (v & 15) | (((qh >> <u32>j) & 1) << 4));
        putCode(kind, seg0, seg, r, j + 16, (v >> 4) | (((qh >> <u32>(j + 16)) & 1) << 4));
      }
    }
  }
}

// Plan layout (i32 words): [nActive, pairsBase, 0, 0], then 8 words per active block:
//   panel address, first pair, number of pairs, ds (f32), ds·Σα (f32), off·Σα (i32), Rp, 0
// then 4 words per pair: segment address of channel a, of channel b, (α_a, α_b) packed, 0.

/** Bytes of a plan for `cols` inputs. */
export function tplanBytes(cols: i32): usize {
  const nb = <usize>(cols >> 4);
  return 16 + nb * 32 + (<usize>(cols >> 1) + nb) * 16;
}

/**
 * Plan a mat-vec over the kept input channels idx[0..n) (ascending) of a transposed copy at T
 * (kind, Rp rows) with the Q8_0 activation qa (quantized from x with the dropped channels zeroed).
 */
export function tplan(kind: i32, T: usize, Rp: i32, cols: i32, qa: usize, idx: usize, n: i32, plan: usize): void {
  const panel = tpanelBytes(kind, Rp);
  const seg = segBytes(kind, <usize>Rp);
  const sb = scaleBytes(kind, <usize>Rp);
  const off: i32 = kind == K_SYM4 ? 8 : kind == K_SYM5 ? 16 : kind == K_SYM6 ? 32 : 0;
  const pwShift: i32 = kind == K_SYM6 ? 4 : 5;
  const pairsBase = plan + 16 + (<usize>cols >> <usize>pwShift) * 32;
  let nActive = 0, nPairs = 0;
  let i = 0;
  while (i < n) {
    const b = load<i32>(idx + (<usize>i << 2)) >> pwShift;
    // the Q8_0 block of 32 activations this panel lies in
    const qb = qa + <usize>(b >> (5 - pwShift)) * BLK32;
    const seg0 = T + <usize>b * panel + sb;
    const first = nPairs;
    let sum = 0, half = 0, pending = false;
    for (; i < n; i++) {
      const c = load<i32>(idx + (<usize>i << 2));
      if ((c >> pwShift) != b) break;
      const j = c & 31;
      const a: i32 = RELAXED ? <i32>load<i8>(qb + <usize>j) : <i32>load<i16>(qb + (<usize>j << 1));
      if (a == 0) continue;
      sum += a;
      const segAddr = seg0 + <usize>(c & ((1 << pwShift) - 1)) * seg;
      if (!pending) { half = a; pending = true; store<u32>(pairsBase + (<usize>nPairs << 4), <u32>segAddr); continue; }
      const p = pairsBase + (<usize>nPairs << 4);
      store<u32>(p, <u32>segAddr, 4);
      store<u32>(p, RELAXED ? ((<u32>half & 0xff) | ((<u32>a & 0xff) << 8)) : ((<u32>half & 0xffff) | (<u32>a << 16)), 8);
      nPairs++;
      pending = false;
    }
    if (pending) {
      // an odd channel out: pair it with itself at weight 0
      const p = pairsBase + (<usize>nPairs << 4);
      store<u32>(p, load<u32>(p), 4);
      store<u32>(p, RELAXED ? (<u32>half & 0xff) : (<u32>half & 0xffff), 8);
      nPairs++;
    }
    if (nPairs == first) continue;
    const B = plan + 16 + (<usize>nActive << 5);
    const ds = load<f32>(qb + 32 * QS);
    store<u32>(B, <u32>(T + <usize>b * panel));
    store<i32>(B, first, 4);
    store<i32>(B, nPairs - first, 8);
    store<f32>(B, ds, 12);
    store<f32>(B, ds * <f32>sum, 16);
    store<i32>(B, off * sum, 20);
    store<i32>(B, Rp, 24);
    nActive++;
  }
  store<i32>(plan, nActive);
  store<u32>(plan, <u32>pairsBase, 4);
}

/** Pair sums for 8 rows: the interleaved codes x (row r: a, b) times the packed (α_a, α_b). */
// @ts-ignore: decorator
@inline function pairDot(alpha: v128, x: v128, ae: v128, ao: v128): v128 {
  if (RELAXED) return i16x8.relaxed_dot_i8x16_i7x16_s(alpha, x);
  return i16x8.add(i16x8.mul(v128.and(x, i16x8.splat(0xff)), ae), i16x8.mul(i16x8.shr_u(x, 8), ao));
}

/** The codes of rows 0–31 of one tile of channels a and b, interleaved by row: four vectors of 8 rows. */
// @ts-ignore: decorator
@inline function pairDots(kind: i32, ca: usize, cb: usize, alpha: v128, ae: v128, ao: v128, acc: usize): void {
  let la: v128, ha: v128, lb: v128, hb: v128;
  if (kind == K_SYM6) {
    la = v128.load(ca); ha = v128.load(ca, 16); lb = v128.load(cb); hb = v128.load(cb, 16);
  } else if (kind == K_SYM5) {
    const va = v128.load(ca, 4), vb = v128.load(cb, 4);
    const qa = load<u32>(ca), qb = load<u32>(cb);
    const m5 = i8x16.splat(0x10);
    la = v128.or(lo4(va), v128.and(qhMask(qa, false), m5));
    ha = v128.or(hi4(va), v128.and(qhMask(qa, true), m5));
    lb = v128.or(lo4(vb), v128.and(qhMask(qb, false), m5));
    hb = v128.or(hi4(vb), v128.and(qhMask(qb, true), m5));
  } else {
    const va = v128.load(ca), vb = v128.load(cb);
    la = lo4(va); ha = hi4(va); lb = lo4(vb); hb = hi4(vb);
  }
  v128.store(acc, i16x8.add(v128.load(acc, 0), pairDot(alpha, i8x16.shuffle(la, lb, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), ae, ao)), 0);
  v128.store(acc, i16x8.add(v128.load(acc, 16), pairDot(alpha, i8x16.shuffle(la, lb, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), ae, ao)), 16);
  v128.store(acc, i16x8.add(v128.load(acc, 32), pairDot(alpha, i8x16.shuffle(ha, hb, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), ae, ao)), 32);
  v128.store(acc, i16x8.add(v128.load(acc, 48), pairDot(alpha, i8x16.shuffle(ha, hb, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), ae, ao)), 48);
}

/** Scratch bytes per thread for tmatvec over a copy of Rp rows. */
export function tscratchBytes(Rp: i32): usize {
  return <usize>(Rp >> 5) * 192;
}

/**
 * Tiles [t0, t1) of y = W·x from the plan, into out[32t .. 32t+32) (the caller's buffer holds Rp).
 * Each pair of channels is read down its whole segment (this thread's tiles, contiguous) before
 * the next pair, as a row gather reads whole rows; each tile's sums wait in `scratch` (i16 for a
 * few pairs, then i32). (Walking the tiles outermost with the sums in registers, reading all the
 * pairs' segments 16 bytes at a time, measured slower once the weights come from DRAM: Qwen2.5's
 * layers at half density, one thread, 51 vs 46 ms.)
 */
export function tmatvec(kind: i32, plan: usize, t0: i32, t1: i32, out: usize, scratch: usize): void {
  const nActive = load<i32>(plan);
  const pairs = <usize>load<u32>(plan, 4);
  const tb = tileBytes(kind);
  const hasMin = kind == K_MIN4;
  const chunk = kind == K_SYM6 ? 2 : kind == K_SYM5 ? 4 : 8;
  const nT = <usize>(t1 - t0);
  const acc16 = scratch, acc32 = scratch + (nT << 6);
  memory.fill(out + (<usize>t0 << 7), 0, nT << 7);
  for (let k = 0; k < nActive; k++) {
    const B = plan + 16 + (<usize>k << 5);
    const P = <usize>load<u32>(B);
    let p = pairs + (<usize>load<i32>(B, 4) << 4);
    const pEnd = p + (<usize>load<i32>(B, 8) << 4);
    const init = i32x4.splat(-load<i32>(B, 20));
    for (let i: usize = 0; i < nT; i++) {
      const a = acc32 + (i << 7);
      v128.store(a, init, 0); v128.store(a, init, 16); v128.store(a, init, 32); v128.store(a, init, 48);
      v128.store(a, init, 64); v128.store(a, init, 80); v128.store(a, init, 96); v128.store(a, init, 112);
    }
    const base = <usize>t0 * tb;
    while (p < pEnd) {
      const cEnd = min(pEnd, p + (<usize>chunk << 4));
      memory.fill(acc16, 0, nT << 6);
      for (; p < cEnd; p += 16) {
        const ca = <usize>load<u32>(p) + base, cb = <usize>load<u32>(p, 4) + base;
        const w = load<u32>(p, 8);
        const alpha = RELAXED ? i16x8.splat(<i16>w) : i16x8.splat(0);
        const ae = RELAXED ? alpha : i16x8.splat(<i16>(w & 0xffff));
        const ao = RELAXED ? alpha : i16x8.splat(<i16>(w >> 16));
        for (let i: usize = 0; i < nT; i++) pairDots(kind, ca + i * tb, cb + i * tb, alpha, ae, ao, acc16 + (i << 6));
      }
      for (let i: usize = 0; i < nT; i++) {
        const s = acc16 + (i << 6), a = acc32 + (i << 7);
        let v = v128.load(s, 0);
        v128.store(a, i32x4.add(v128.load(a, 0), i32x4.extend_low_i16x8_s(v)), 0);
        v128.store(a, i32x4.add(v128.load(a, 16), i32x4.extend_high_i16x8_s(v)), 16);
        v = v128.load(s, 16);
        v128.store(a, i32x4.add(v128.load(a, 32), i32x4.extend_low_i16x8_s(v)), 32);
        v128.store(a, i32x4.add(v128.load(a, 48), i32x4.extend_high_i16x8_s(v)), 48);
        v = v128.load(s, 32);
        v128.store(a, i32x4.add(v128.load(a, 64), i32x4.extend_low_i16x8_s(v)), 64);
        v128.store(a, i32x4.add(v128.load(a, 80), i32x4.extend_high_i16x8_s(v)), 80);
        v = v128.load(s, 48);
        v128.store(a, i32x4.add(v128.load(a, 96), i32x4.extend_low_i16x8_s(v)), 96);
        v128.store(a, i32x4.add(v128.load(a, 112), i32x4.extend_high_i16x8_s(v)), 112);
      }
    }
    const ds = f32x4.splat(load<f32>(B, 12));
    const c = f32x4.splat(load<f32>(B, 16));
    const mOff = <usize>load<i32>(B, 24) << 1;
    for (let i: usize = 0; i < nT; i++) {
      const t = <usize>t0 + i;
      const a = acc32 + (i << 7), y = out + (t << 7), d = P + (t << 6);
      for (let h: usize = 0; h < 4; h++) {
        const dh = d + (h << 4), yh = y + (h << 5), ah = a + (h << 5);
        const v = v128.load(dh);
        let y0 = f32x4.add(v128.load(yh), f32x4.mul(f32x4.convert_i32x4_s(v128.load(ah)), f32x4.mul(bf4(v, 0), ds)));
        let y1 = f32x4.add(v128.load(yh, 16), f32x4.mul(f32x4.convert_i32x4_s(v128.load(ah, 16)), f32x4.mul(bf4(v, 1), ds)));
        if (hasMin) {
          const m = v128.load(dh + mOff);
          y0 = f32x4.add(y0, f32x4.mul(bf4(m, 0), c));
          y1 = f32x4.add(y1, f32x4.mul(bf4(m, 1), c));
        }
        v128.store(yh, y0);
        v128.store(yh, y1, 16);
      }
    }
  }
}
