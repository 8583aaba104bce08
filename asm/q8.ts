// The integer path: activations quantized to 8 bits once per mat-vec, weights kept in their
// ggml blocks, products summed in integers and scaled once per block — what llama.cpp does on
// the CPU, with the same activation formats:
//   Q8_0 (for Q4_0, Q5_0, Q8_0 weights): blocks of 32, d = amax/127 stored as f16, q = round(x/d)
//   Q8_1 (for Q4_1, Q5_1): as Q8_0, plus s = d·Σq for the weights' additive min
//   Q8_K (for Q4_K, Q5_K, Q6_K): blocks of 256, d in f32, plus Σq over every 16 (the mins' term)
//
// An activation ("qa") of n elements (n a multiple of 32) is a row of blocks, each block its codes
// followed by its scale and sums, so that a dot product walks one pointer through it:
//   32-blocks (Q8_0, Q8_1): codes, d f32, s, Σq of the first and of the second 16 (i32)
//                           s = Q8_1: d·Σq rounded through f16 as llama.cpp stores it (f32); Q8_0: Σq (i32)
//                           then, splat for the interleaved-rows kernels (asm/r4.ts), d·2^112 in four
//                           f32 lanes and (Q8_1) s·2^112 in four f32 lanes or (Q8_0) Σq in four i32 lanes:
//                           made once here, they are one vector load per block there instead of a
//                           scalar load, a multiply and a splat per block, row group and token
//   256-blocks (Q8_K):      codes, d f32, 12 bytes padding, Σq of each 16 (16 × i32), the same sums
//                           as i16 (|Σq| ≤ 16·127): two vectors that the K-quants' scale and min terms
//                           multiply with their sixteen (eight) scales in two pmaddwd
// Codes are i8 with relaxed SIMD, i16 without (widened once here, not per row).
//
// Two builds: with relaxed SIMD, 16 weight codes (unsigned, < 128) times 16 signed activation
// codes go through one i16x8.relaxed_dot_i8x16_i7x16_s (pmaddubsw on x86); without, both are
// widened to i16 and multiplied with i32x4.dot_i16x8_s. The "partial" sums `P` are i16x8 in the
// first build and i32x4 in the second; pdot / padd / pwiden / pscale hide the difference.
// (Node 20's i32x4.relaxed_dot_i8x16_i7x16_add_s gives wrong sums, so only the i16x8 form is used.)

import { f32to16, f16, hsum, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, qhMask } from './common';

export const RELAXED: bool = ASC_FEATURE_RELAXED_SIMD;
/** bytes per activation code */
export const QS: usize = RELAXED ? 1 : 2;

// activation kinds
export const ACT_Q8_0: i32 = 0;
export const ACT_Q8_1: i32 = 1;
export const ACT_Q8_K: i32 = 2;

/** The activation kind a weight type is multiplied with, or -1 (no integer path). */
export function actKind(type: i32): i32 {
  if (type == Q4_0 || type == Q5_0 || type == Q8_0) return ACT_Q8_0;
  if (type == Q4_1 || type == Q5_1) return ACT_Q8_1;
  if (type == Q4_K || type == Q5_K || type == Q6_K) return ACT_Q8_K;
  return -1;
}

/** 2^112: f16 bits shifted into an f32's place read as the value times 2^-112 (asm/r4.ts h4raw) */
export const TWO112: f32 = reinterpret<f32>(0x77800000);

/** bytes of a 32-block and of a 256-block of activation */
export const BLK32: usize = 32 * QS + 48;
export const BLK256: usize = 256 * QS + 112;

/** Bytes of a quantized activation of n elements (either kind). */
export function actBytes(n: i32): usize {
  return <usize>(n >> 5) * BLK32;
}

// ------------------------------------------------------------------ f16 scales through a table

let f16tab: usize = 0;

/** Use the 65536-entry f16 → f32 table at p (256 KiB); fill it when `fill`. */
export function setF16Table(p: usize, fill: bool): void {
  f16tab = p;
  if (fill) for (let h: u32 = 0; h < 65536; h++) store<f32>(p + (<usize>h << 2), f16(h));
}

// @ts-ignore: decorator
@inline function h2f(p: usize): f32 {
  return load<f32>(f16tab + (<usize>load<u16>(p) << 2));
}

// ------------------------------------------------------------------ quantizing activations

// @ts-ignore: decorator
@inline function amax4(a: v128, v: v128): v128 { return f32x4.max(a, f32x4.abs(v)); }

// @ts-ignore: decorator
@inline function hmax(v: v128): f32 {
  const m = f32x4.max(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1));
}

/** 16 f32 at x times `id`, rounded to nearest even, stored as 16 codes at q; returns their i32 sums (i32x4). */
// @ts-ignore: decorator
@inline function codes16(x: usize, id: v128, q: usize): v128 {
  const a = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x, 0), id)));
  const b = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x, 16), id)));
  const c = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x, 32), id)));
  const e = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(x, 48), id)));
  const lo = i16x8.narrow_i32x4_s(a, b), hi = i16x8.narrow_i32x4_s(c, e);
  if (RELAXED) {
    v128.store(q, i8x16.narrow_i16x8_s(lo, hi));
  } else {
    v128.store(q, lo);
    v128.store(q, hi, 16);
  }
  return i32x4.add(i32x4.add(a, b), i32x4.add(c, e));
}

// @ts-ignore: decorator
@inline function hsumi(v: v128): i32 {
  const s = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
}

/** Quantize x[0..n) (f32; n a multiple of 32, of 256 for Q8_K) into the activation at dst. */
export function quantizeAct(kind: i32, x: usize, n: i32, dst: usize): void {
  if (kind == ACT_Q8_K) {
    for (let b = 0; b < (n >> 8); b++, x += 1024, dst += BLK256) {
      // the element of largest magnitude, with its sign (llama.cpp scales by -127/max)
      let va = f32x4.splat(0);
      for (let i: usize = 0; i < 1024; i += 16) va = amax4(va, v128.load(x + i));
      const amax = hmax(va);
      const meta = dst + 256 * QS;
      if (amax == 0) {
        memory.fill(dst, 0, BLK256);
        continue;
      }
      let mx: f32 = 0;
      for (let i: usize = 0; i < 1024; i += 4) {
        const v = load<f32>(x + i);
        if (abs(v) == amax) { mx = v; break; }
      }
      const iscale: f32 = -127 / mx;
      const id = f32x4.splat(iscale);
      // |iscale·x| <= 127, so llama.cpp's clamp of the codes at 127 never applies
      for (let g = 0; g < 16; g++) {
        const sums = codes16(x + (<usize>g << 6), id, dst + (<usize>g << 4) * QS);
        const t = hsumi(sums);
        store<i32>(meta + 16 + (<usize>g << 2), t);
        store<i16>(meta + 80 + (<usize>g << 1), <i16>t);
      }
      store<f32>(meta, 1 / iscale);
    }
    return;
  }
  for (let b = 0; b < (n >> 5); b++, x += 128, dst += BLK32) {
    let va = f32x4.splat(0);
    for (let i: usize = 0; i < 128; i += 16) va = amax4(va, v128.load(x + i));
    const amax = hmax(va);
    const d: f32 = amax / 127;
    const id = f32x4.splat(amax != 0 ? 127 / amax : 0);
    const sa = hsumi(codes16(x, id, dst));
    const sc = hsumi(codes16(x + 64, id, dst + 16 * QS));
    const meta = dst + 32 * QS;
    const dh = f16(f32to16(d));
    store<f32>(meta, dh);
    // Q8_1: s = d·Σq as llama.cpp stores it (f16); Q8_0: the integer Σq, for exact offsets (Q4_0, Q5_0)
    if (kind == ACT_Q8_1) {
      const s1 = f16(f32to16(d * <f32>(sa + sc)));
      store<f32>(meta, s1, 4);
      v128.store(meta, f32x4.splat(s1 * TWO112), 32);
    } else {
      store<i32>(meta, sa + sc, 4);
      v128.store(meta, i32x4.splat(sa + sc), 32);
    }
    store<i32>(meta, sa, 8);
    store<i32>(meta, sc, 12);
    v128.store(meta, f32x4.splat(dh * TWO112), 16);
  }
}

// ------------------------------------------------------------------ integer dot primitives

/**
 * Products of 16 unsigned weight codes (< 128) with 16 activation codes already loaded (xl; plain
 * SIMD: xl, xh their i16 halves), as partial sums P: for kernels that reuse one block of the
 * activation across several rows.
 */
// @ts-ignore: decorator
@inline export function pdx(xl: v128, xh: v128, w: v128): v128 {
  if (RELAXED) return i16x8.relaxed_dot_i8x16_i7x16_s(xl, w);
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(w), xl), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(w), xh));
}
/** pdx with the activation codes at xp. */
// @ts-ignore: decorator
@inline export function pdot(xp: usize, w: v128): v128 {
  const xl = v128.load(xp);
  return pdx(xl, RELAXED ? xl : v128.load(xp, 16), w);
}
// @ts-ignore: decorator
@inline export function padd(a: v128, b: v128): v128 {
  return RELAXED ? i16x8.add(a, b) : i32x4.add(a, b);
}
/** P → i32x4 */
// @ts-ignore: decorator
@inline export function pwiden(p: v128): v128 {
  return RELAXED ? i32x4.extadd_pairwise_i16x8_s(p) : p;
}
/** P·s → i32x4, s a small signed integer in every lane: i16 lanes (relaxed build) or i32 lanes (plain) */
// @ts-ignore: decorator
@inline function pscale(p: v128, s: v128): v128 {
  return RELAXED ? i32x4.dot_i16x8_s(p, s) : i32x4.mul(p, s);
}
/** Products of 16 signed weight codes (Q8_0) with the activation codes at xp, as i32x4. */
// @ts-ignore: decorator
@inline function sdot(xp: usize, w: v128): v128 {
  if (RELAXED) {
    // |w| · (x with w's sign): the unsigned operand stays below 128 (Q8_0 codes are in [-127, 127])
    const m = i8x16.lt_s(w, i8x16.splat(0));
    const x = v128.load(xp);
    return i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(x, m), m), i8x16.abs(w)));
  }
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), v128.load(xp)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), v128.load(xp, 16)));
}


// @ts-ignore: decorator
@inline export function lo4(v: v128): v128 { return v128.and(v, i8x16.splat(0x0f)); }
// @ts-ignore: decorator
@inline export function hi4(v: v128): v128 { return v128.and(i16x8.shr_u(v, 4), i8x16.splat(0x0f)); }

/** 0x10 in byte j (j < 16) where bit base+j of qh is set (the 5th bit of Q5_0 / Q5_1 codes). */
// @ts-ignore: decorator
@inline function bit5(qh: u32, hiHalf: bool): v128 {
  return v128.and(qhMask(qh, hiHalf), i8x16.splat(0x10));
}

/** acc + (integer sums)·s: a block's sums scaled into the float accumulator (every dot product here). */
// @ts-ignore: decorator
@inline function addScaled(acc: v128, sums: v128, s: f32): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(sums), f32x4.splat(s)));
}

// ------------------------------------------------------------------ row · activation

// Each walks the weight row (w .. end) and the activation (q) block by block; M = the activation
// block's metadata (d, s, sums) right after its codes.

function dotQ4_0(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  for (; w < end; w += 18, q += BLK32) {
    const v = v128.load(w, 2);
    const p = padd(pdot(q, lo4(v)), pdot(q + 16 * QS, hi4(v)));
    const M = q + 32 * QS;
    // Σ(c − 8)·x = Σc·x − 8·Σx, exact in integers: 4 lanes × 2·Σx
    const s = i32x4.sub(pwiden(p), i32x4.splat(load<i32>(M, 4) << 1));
    acc = addScaled(acc, s, h2f(w) * load<f32>(M));
  }
  return hsum(acc);
}

function dotQ4_1(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  let corr: f32 = 0;
  for (; w < end; w += 20, q += BLK32) {
    const v = v128.load(w, 4);
    const p = padd(pdot(q, lo4(v)), pdot(q + 16 * QS, hi4(v)));
    const M = q + 32 * QS;
    acc = addScaled(acc, pwiden(p), h2f(w) * load<f32>(M));
    corr += h2f(w + 2) * load<f32>(M, 4);
  }
  return hsum(acc) + corr;
}

function dotQ5_0(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  for (; w < end; w += 22, q += BLK32) {
    const qh = load<u32>(w, 2);
    const v = v128.load(w, 6);
    const p = padd(pdot(q, v128.or(lo4(v), bit5(qh, false))), pdot(q + 16 * QS, v128.or(hi4(v), bit5(qh, true))));
    const M = q + 32 * QS;
    const s = i32x4.sub(pwiden(p), i32x4.splat(load<i32>(M, 4) << 2)); // − 16·Σx
    acc = addScaled(acc, s, h2f(w) * load<f32>(M));
  }
  return hsum(acc);
}

function dotQ5_1(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  let corr: f32 = 0;
  for (; w < end; w += 24, q += BLK32) {
    const qh = load<u32>(w, 4);
    const v = v128.load(w, 8);
    const p = padd(pdot(q, v128.or(lo4(v), bit5(qh, false))), pdot(q + 16 * QS, v128.or(hi4(v), bit5(qh, true))));
    const M = q + 32 * QS;
    acc = addScaled(acc, pwiden(p), h2f(w) * load<f32>(M));
    corr += h2f(w + 2) * load<f32>(M, 4);
  }
  return hsum(acc) + corr;
}

function dotQ8_0(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  for (; w < end; w += 34, q += BLK32) {
    const s = i32x4.add(sdot(q, v128.load(w, 2)), sdot(q + 16 * QS, v128.load(w, 18)));
    acc = addScaled(acc, s, h2f(w) * load<f32>(q + 32 * QS));
  }
  return hsum(acc);
}

function dotQ4_K(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  let corr = f32x4.splat(0);
  for (; w < end; w += 144, q += BLK256) {
    const M = q + 256 * QS;
    const S = q4kScales(w + 4);
    let isum = i32x4.splat(0);
    let ix = scaleIdx(0);
    const one = i8x16.splat(1);
    for (let c = 0; c < 4; c++) {
      const qw = w + 16 + (<usize>c << 5);
      const xq = q + (<usize>c << 6) * QS;
      const v0 = v128.load(qw, 0), v1 = v128.load(qw, 16);
      const sa = scaleV(S, ix);
      ix = i8x16.add(ix, one);
      isum = q4kpartV(isum, xq, lo4(v0), lo4(v1), hi4(v0), hi4(v1), sa, scaleV(S, ix));
      ix = i8x16.add(ix, one);
    }
    const mins = q4kminsV(q4kMins2Lo(S), q4kMins2Hi(S), M + 80);
    const dx = load<f32>(M);
    acc = addScaled(acc, isum, h2f(w) * dx);
    corr = addScaled(corr, mins, h2f(w + 2) * dx);
  }
  return hsum(acc) - hsum(corr);
}

function dotQ5_K(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  let corr = f32x4.splat(0);
  const b10 = i8x16.splat(0x10);
  for (; w < end; w += 176, q += BLK256) {
    const M = q + 256 * QS;
    const S = q4kScales(w + 4);
    const h0 = v128.load(w, 16), h1 = v128.load(w, 32);
    let isum = i32x4.splat(0);
    let ix = scaleIdx(0);
    const one = i8x16.splat(1);
    for (let c = 0; c < 4; c++) {
      const qw = w + 48 + (<usize>c << 5);
      const xq = q + (<usize>c << 6) * QS;
      const v0 = v128.load(qw, 0), v1 = v128.load(qw, 16);
      // bit 2c of the high bits → the low-nibble codes, bit 2c+1 → the high ones
      const bl = i32x4.splat(0x01010101 << (2 * c)), bh = i32x4.splat(0x02020202 << (2 * c));
      const l0 = v128.or(lo4(v0), v128.and(i8x16.eq(v128.and(h0, bl), bl), b10));
      const l1 = v128.or(lo4(v1), v128.and(i8x16.eq(v128.and(h1, bl), bl), b10));
      const u0 = v128.or(hi4(v0), v128.and(i8x16.eq(v128.and(h0, bh), bh), b10));
      const u1 = v128.or(hi4(v1), v128.and(i8x16.eq(v128.and(h1, bh), bh), b10));
      const sa = scaleV(S, ix);
      ix = i8x16.add(ix, one);
      isum = q4kpartV(isum, xq, l0, l1, u0, u1, sa, scaleV(S, ix));
      ix = i8x16.add(ix, one);
    }
    const mins = q4kminsV(q4kMins2Lo(S), q4kMins2Hi(S), M + 80);
    const dx = load<f32>(M);
    acc = addScaled(acc, isum, h2f(w) * dx);
    corr = addScaled(corr, mins, h2f(w + 2) * dx);
  }
  return hsum(acc) - hsum(corr);
}

function dotQ6_K(w: usize, end: usize, q: usize): f32 {
  let acc = f32x4.splat(0);
  const m30 = i8x16.splat(0x30);
  for (; w < end; w += 210, q += BLK256) {
    const M = q + 256 * QS;
    let isum = i32x4.splat(0);
    for (let h = 0; h < 2; h++) {
      const ql = w + (<usize>h << 6);
      const qh = w + 128 + (<usize>h << 5);
      const sp = w + 192 + (<usize>h << 3);
      const xh = q + (<usize>h << 7) * QS;
      for (let half = 0; half < 2; half++) {
        const l = <usize>half << 4;
        const a = v128.load(ql + l, 0), c = v128.load(ql + l, 32), hb = v128.load(qh + l);
        // codes 0..63 (the −32 is applied through the activation sums)
        const q1 = v128.or(lo4(a), v128.and(i16x8.shl(hb, 4), m30));
        const q2 = v128.or(lo4(c), v128.and(i16x8.shl(hb, 2), m30));
        const q3 = v128.or(hi4(a), v128.and(hb, m30));
        const q4 = v128.or(hi4(c), v128.and(i16x8.shr_u(hb, 2), m30));
        isum = q6part4(isum, xh + l * QS, q1, q2, q3, q4, q6sc(sp, half), q6sc(sp, half + 2), q6sc(sp, half + 4), q6sc(sp, half + 6));
      }
    }
    // − 32·Σ sc·Σx, lane by lane (q6offsV)
    isum = i32x4.sub(isum, i32x4.shl(q6offsV(q6lo(w + 192), q6hi(w + 192), M + 80), 5));
    acc = addScaled(acc, isum, h2f(w + 208) * load<f32>(M));
  }
  return hsum(acc);
}

/** W[row at w] · activation at qa (cols elements); NaN for a type without an integer path. */
// @ts-ignore: decorator
@inline function qdotRow(type: i32, w: usize, rowBytes: usize, qa: usize): f32 {
  const end = w + rowBytes;
  switch (type) {
    case Q4_0: return dotQ4_0(w, end, qa);
    case Q4_1: return dotQ4_1(w, end, qa);
    case Q5_0: return dotQ5_0(w, end, qa);
    case Q5_1: return dotQ5_1(w, end, qa);
    case Q8_0: return dotQ8_0(w, end, qa);
    case Q4_K: return dotQ4_K(w, end, qa);
    case Q5_K: return dotQ5_K(w, end, qa);
    case Q6_K: return dotQ6_K(w, end, qa);
    default: return NaN;
  }
}

/**
 * Rows i in [i0, i1) of a mat-vec on the integer path: out[i] = W[r]·qa with r = i, or
 * r = rowIdx[i] when rowIdx != 0 (out compacted; the host scatters).
 */
export function qmatvec(type: i32, w: usize, rowBytes: usize, cols: i32, rowIdx: usize, i0: i32, i1: i32, qa: usize, out: usize): void {
  // (four rows per pass with their sums in the lanes, as prefill does with tokens, is faster only
  // with the rows interleaved in memory: asm/r4.ts; this is the path for the types it does not cover)
  if (rowIdx == 0) {
    let wr = w + <usize>i0 * rowBytes;
    for (let i = i0; i < i1; i++, wr += rowBytes) store<f32>(out + (<usize>i << 2), qdotRow(type, wr, rowBytes, qa));
  } else {
    // A gather of rows is a forward read with holes, which the memory system does not stream: each
    // row would arrive at DRAM latency. So while a row is computed, the row two ahead is touched,
    // and the rows skipped before it too when they are few (a dense gather, as CATS's up): the
    // reads stay one forward stream (asm/sparse.ts measures the same for the transposed copies).
    // A sparse gather (the output head's candidates) touches its own rows only.
    let sink: u32 = 0;
    for (let i = i0; i < i1; i++) {
      const r = <usize>load<i32>(rowIdx + (<usize>i << 2));
      if (i + 2 < i1) {
        const ra = w + <usize>load<i32>(rowIdx + (<usize>(i + 2) << 2)) * rowBytes;
        const prevEnd = w + (<usize>load<i32>(rowIdx + (<usize>(i + 1) << 2)) + 1) * rowBytes;
        let p = ra - prevEnd <= 4 * rowBytes ? prevEnd : ra;
        for (; p < ra + rowBytes; p += 64) sink += load<u8>(p);
      }
      store<f32>(out + (<usize>i << 2), qdotRow(type, w + r * rowBytes, rowBytes, qa));
    }
    // keeps the touches: a sum of bytes reaches 2^32 − 1 only past 16 million lines (a 1 GB matrix)
    if (sink == 0xffffffff) store<f32>(out + (<usize>i0 << 2), 0);
  }
}

// ------------------------------------------------------------------ several tokens at a time (prefill)

// Q6_K's offsets' term Σ_k sc_k · (Σx of 16-group k) in two pmaddwd over the sixteen int8 scales,
// where the scalar code took a load and a multiply per scale and step.
/**
 * Σ_k sc_k · (Σq of the activation's 16-group k) over a Q6_K block: s0, s1 its sixteen scales as
 * i16 (q6lo / q6hi, once per block), g16 the activation's i16 sums.
 */
// @ts-ignore: decorator
@inline function q6offsV(s0: v128, s1: v128, g16: usize): v128 {
  // in the lanes of an i32x4 (their sum is the value): subtracted lane by lane from the integer sums,
  // which are summed over the lanes at the end anyway
  return i32x4.add(i32x4.dot_i16x8_s(s0, v128.load(g16)), i32x4.dot_i16x8_s(s1, v128.load(g16, 16)));
}
/** A Q6_K block's sixteen int8 scales at sp as two i16x8 (scales 0–7, 8–15). */
// @ts-ignore: decorator
@inline function q6lo(sp: usize): v128 { return i16x8.extend_low_i8x16_s(v128.load(sp)); }
// @ts-ignore: decorator
@inline function q6hi(sp: usize): v128 { return i16x8.extend_high_i8x16_s(v128.load(sp)); }
/** The pscale operand of scale j of the 8 at sp: the byte splat (a lane swizzled out of the loaded scales measured slower). */
// @ts-ignore: decorator
@inline function q6sc(sp: usize, j: i32): v128 {
  return RELAXED ? i16x8.splat(<i16>load<i8>(sp + <usize>j)) : i32x4.splat(<i32>load<i8>(sp + <usize>j));
}
/** Step (h, half) of a Q6_K block: the four code vectors times scales sc_(8h + half + 2t), t < 4. */
// @ts-ignore: decorator
@inline function q6part4(isum: v128, xl: usize, q1: v128, q2: v128, q3: v128, q4: v128, S0: v128, S1: v128, S2: v128, S3: v128): v128 {
  return i32x4.add(isum, i32x4.add(
    i32x4.add(pscale(pdot(xl, q1), S0), pscale(pdot(xl + 32 * QS, q2), S1)),
    i32x4.add(pscale(pdot(xl + 64 * QS, q3), S2), pscale(pdot(xl + 96 * QS, q4), S3))));
}
// Q4_K's 6-bit scales and mins, all sixteen unpacked at once (the scalar kScale / kMin per
// sub-block took over half of the kernel's instructions):
//   bytes 0–7 = sc0..sc7, bytes 8–15 = m0..m7, from the 12 packed bytes at p (ggml's layout:
//   j < 4: sc = b[j] & 63, m = b[j+4] & 63; j ≥ 4: sc = (b[j+4] & 15) | (b[j-4] >> 6) << 4,
//   m = (b[j+4] >> 4) | (b[j] >> 6) << 4)
// @ts-ignore: decorator
@inline function q4kScales(p: usize): v128 {
  const b = v128.load(p); // the 12 bytes and 4 of the codes after them (never selected)
  // the low parts: sc0-3 ← b0-3, sc4-7 ← b8-11 (low nibble), m0-3 ← b4-7, m4-7 ← b8-11 (high nibble)
  const lo = v128.and(i8x16.swizzle(b, i8x16(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11)),
    i8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0));
  const mhi = v128.and(i16x8.shr_u(i8x16.swizzle(b, i8x16(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 8, 9, 10, 11)), 4), i8x16.splat(0x0f));
  // the top two bits (b >> 6) << 4 = (b >> 2) & 0x30: sc4-7 ← b0-3, m4-7 ← b4-7
  const top = v128.and(i16x8.shr_u(i8x16.swizzle(b, i8x16(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7)), 2), i8x16.splat(0x30));
  return v128.or(v128.or(lo, mhi), top);
}
/** Scale j of q4kScales as the operand pscale multiplies a partial-sum vector with (idx: scaleIdx(j)). */
// @ts-ignore: decorator
@inline function scaleV(S: v128, idx: v128): v128 { return i8x16.swizzle(S, idx); }
// relaxed: i16 lanes (byte j, then a zero byte); plain: i32 lanes (indices ≥ 16 select zero)
// @ts-ignore: decorator
@inline function scaleIdx(j: i32): v128 {
  return RELAXED
    ? i8x16.add(i8x16(0, 16, 0, 16, 0, 16, 0, 16, 0, 16, 0, 16, 0, 16, 0, 16), i8x16.splat(<i8>j))
    : i8x16.add(i8x16(0, 16, 16, 16, 0, 16, 16, 16, 0, 16, 16, 16, 0, 16, 16, 16), i8x16.splat(<i8>j));
}
// @ts-ignore: decorator
@inline function q4kpartV(isum: v128, xq: usize, l0: v128, l1: v128, h0: v128, h1: v128, sa: v128, sb: v128): v128 {
  const pl = padd(pdot(xq, l0), pdot(xq + 16 * QS, l1));
  const ph = padd(pdot(xq + 32 * QS, h0), pdot(xq + 48 * QS, h1));
  return i32x4.add(isum, i32x4.add(pscale(pl, sa), pscale(ph, sb)));
}
/**
 * The mins of q4kScales, each twice, as i16 lanes: [m0, m0, m1, m1, m2, m2, m3, m3] (lo) and m4–7 (hi),
 * the operands that pmaddwd multiplies with the activation's sixteen i16 sums of 16.
 */
// @ts-ignore: decorator
@inline function q4kMins2Lo(S: v128): v128 { return i8x16.swizzle(S, i8x16(8, -1, 8, -1, 9, -1, 9, -1, 10, -1, 10, -1, 11, -1, 11, -1)); }
// @ts-ignore: decorator
@inline function q4kMins2Hi(S: v128): v128 { return i8x16.swizzle(S, i8x16(12, -1, 12, -1, 13, -1, 13, -1, 14, -1, 14, -1, 15, -1, 15, -1)); }
/**
 * Σ_j m_j · (Σq of the activation's 32-block j) for a Q4_K block, in the four lanes of an i32x4
 * (their sum is the value): M0, M1 its mins (q4kMins2Lo / Hi), g16 the activation's i16 sums.
 * Two pmaddwd; the scalar form took a horizontal sum per block and token.
 */
// @ts-ignore: decorator
@inline function q4kminsV(M0: v128, M1: v128, g16: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(M0, v128.load(g16)), i32x4.dot_i16x8_s(M1, v128.load(g16, 16)));
}

/**
 * The four tokens' scales and sums side by side, per 32-block (built once per call by meta4()):
 * [d_t0..d_t3] f32, then [s_t0..s_t3] (Q8_0: Σq as i32; Q8_1: s as f32). 32 bytes per block.
 */
export function meta4(q: usize, S: usize, nb: i32, dst: usize, n: usize = 4): void {
  // n < 4 tokens (a pair): the last one fills the lanes past them
  for (let b = 0; b < nb; b++, q += BLK32, dst += 32) {
    const M = q + 32 * QS;
    for (let t: usize = 0; t < 4; t++) {
      const u = min(t, n - 1);
      store<u32>(dst + (t << 2), load<u32>(M + u * S));
      store<u32>(dst + 16 + (t << 2), load<u32>(M + u * S, 4));
    }
  }
}

/** [Σ lanes of a, Σ b, Σ c, Σ d] (i32x4) */
// @ts-ignore: decorator
@inline function tsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 1, 4, 5), i32x4.shuffle(ab, cd, 2, 3, 6, 7));
}

/** [Σ lanes of a, Σ b, Σ a, Σ b] (i32x4) */
// @ts-ignore: decorator
@inline function tsum2(a: v128, b: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  return i32x4.add(ab, i32x4.shuffle(ab, ab, 2, 3, 0, 1));
}

/** Σ codes·x of one 32-block for one token, as i32x4 partial sums. */
// @ts-ignore: decorator
@inline function blk(q: usize, c0: v128, c1: v128): v128 {
  return pwiden(padd(pdot(q, c0), pdot(q + 16 * QS, c1)));
}

/**
 * The 32-block types for four tokens at once, the tokens in the lanes: per block the four integer
 * sums are gathered into one vector, and offset, scale and accumulation are one vector op each.
 * m4: meta4() of the four tokens. Returns [y_t0, y_t1, y_t2, y_t3].
 */
function dot4lanes(type: i32, w: usize, end: usize, q: usize, S: usize, m4: usize): v128 {
  return dotLanes(type, w, end, q, S, m4, true);
}

/**
 * The same for two tokens (at q and q + S; m4: meta4(…, 2)): lanes 0 and 1 of the result. The
 * weight block is unpacked once for both, which a batch of two would otherwise not share.
 */
function dot2lanes(type: i32, w: usize, end: usize, q: usize, S: usize, m4: usize): v128 {
  return dotLanes(type, w, end, q, S, m4, false);
}

/** dot4lanes (four) or dot2lanes: the same sums, of four tokens or of two. */
// @ts-ignore: decorator
@inline function dotLanes(type: i32, w: usize, end: usize, q: usize, S: usize, m4: usize, four: bool): v128 {
  let acc = f32x4.splat(0);
  if (type == Q5_0) {
    for (; w < end; w += 22, q += BLK32, m4 += 32) {
      const qh = load<u32>(w, 2);
      const v = v128.load(w, 6);
      const c0 = v128.or(lo4(v), bit5(qh, false)), c1 = v128.or(hi4(v), bit5(qh, true));
      let s = four ? tsum4(blk(q, c0, c1), blk(q + S, c0, c1), blk(q + 2 * S, c0, c1), blk(q + 3 * S, c0, c1)) : tsum2(blk(q, c0, c1), blk(q + S, c0, c1));
      s = i32x4.sub(s, i32x4.shl(v128.load(m4, 16), 4)); // − 16·Σx per token
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(f32x4.splat(h2f(w)), v128.load(m4))));
    }
  } else if (type == Q4_0) {
    for (; w < end; w += 18, q += BLK32, m4 += 32) {
      const v = v128.load(w, 2);
      const c0 = lo4(v), c1 = hi4(v);
      let s = four ? tsum4(blk(q, c0, c1), blk(q + S, c0, c1), blk(q + 2 * S, c0, c1), blk(q + 3 * S, c0, c1)) : tsum2(blk(q, c0, c1), blk(q + S, c0, c1));
      s = i32x4.sub(s, i32x4.shl(v128.load(m4, 16), 3)); // − 8·Σx
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(f32x4.splat(h2f(w)), v128.load(m4))));
    }
  } else if (type == Q4_1) {
    let mins = f32x4.splat(0);
    for (; w < end; w += 20, q += BLK32, m4 += 32) {
      const v = v128.load(w, 4);
      const c0 = lo4(v), c1 = hi4(v);
      const s = four ? tsum4(blk(q, c0, c1), blk(q + S, c0, c1), blk(q + 2 * S, c0, c1), blk(q + 3 * S, c0, c1)) : tsum2(blk(q, c0, c1), blk(q + S, c0, c1));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(f32x4.splat(h2f(w)), v128.load(m4))));
      mins = f32x4.add(mins, f32x4.mul(f32x4.splat(h2f(w + 2)), v128.load(m4, 16)));
    }
    acc = f32x4.add(acc, mins);
  } else {
    // Q8_0
    for (; w < end; w += 34, q += BLK32, m4 += 32) {
      const w0 = v128.load(w, 2), w1 = v128.load(w, 18);
      const t0 = i32x4.add(sdot(q, w0), sdot(q + 16 * QS, w1)), t1 = i32x4.add(sdot(q + S, w0), sdot(q + S + 16 * QS, w1));
      const s = four
        ? tsum4(t0, t1, i32x4.add(sdot(q + 2 * S, w0), sdot(q + 2 * S + 16 * QS, w1)), i32x4.add(sdot(q + 3 * S, w0), sdot(q + 3 * S + 16 * QS, w1)))
        : tsum2(t0, t1);
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(f32x4.splat(h2f(w)), v128.load(m4))));
    }
  }
  return acc;
}

// ------------------------------------------------------------------ K-quants, a row unpacked (prefill)
// A Q4_K / Q6_K row is unpacked once into a buffer — codes as bytes, each sub-block's scale as the
// operand pmaddwd takes, the mins and offsets, the super-block scales — and the tokens then run
// over it two at a time (sharing the buffer's loads), each with its own chain of sums in
// registers. Four tokens per pass over the packed row shared the unpacking too, but kept more
// live vectors than V8's sixteen registers, which spilled the sums to the stack (Q4_K 23 → 28,
// Q6_K 21 → 23.5 GMAC/s on Qwen's down projection). Each token's arithmetic is dotQ4_K's /
// dotQ6_K's, in the same order: the same bits as a decode step.

/** bytes per super-block unpacked: Q4_K codes 256, scale operands 8 × 16, mins 2 × 16, d and dmin (f32) */
const U4K: usize = 432;
/** Q6_K: codes 256, scale operands 16 × 16, the scales as i16 (2 × 16), d (f32) */
const U6K: usize = 560;

/** Scratch bytes for one unpacked K-quant row of `cols` columns. */
export function kRowScratch(cols: i32): usize {
  return <usize>(cols >> 8) * U6K + 64;
}

function unpackQ4_K(w: usize, nsb: i32, u: usize): void {
  for (let b = 0; b < nsb; b++, w += 144, u += U4K) {
    const SC = q4kScales(w + 4);
    let ix = scaleIdx(0);
    const one = i8x16.splat(1);
    for (let c: usize = 0; c < 4; c++) {
      const qw = w + 16 + (c << 5);
      const v0 = v128.load(qw, 0), v1 = v128.load(qw, 16);
      const o = u + (c << 6);
      v128.store(o, lo4(v0)); v128.store(o, lo4(v1), 16); v128.store(o, hi4(v0), 32); v128.store(o, hi4(v1), 48);
      const so = u + 256 + (c << 5);
      v128.store(so, scaleV(SC, ix));
      ix = i8x16.add(ix, one);
      v128.store(so, scaleV(SC, ix), 16);
      ix = i8x16.add(ix, one);
    }
    v128.store(u, q4kMins2Lo(SC), 384);
    v128.store(u, q4kMins2Hi(SC), 400);
    store<f32>(u, h2f(w), 416);
    store<f32>(u, h2f(w + 2), 420);
  }
}

/** dotQ4_K on an unpacked row. */
function udotQ4_K(u: usize, nsb: i32, q: usize): f32 {
  let acc = f32x4.splat(0);
  let corr = f32x4.splat(0);
  for (let b = 0; b < nsb; b++, u += U4K, q += BLK256) {
    const M = q + 256 * QS;
    let isum = i32x4.splat(0);
    for (let c: usize = 0; c < 4; c++) {
      const o = u + (c << 6), so = u + 256 + (c << 5);
      isum = q4kpartV(isum, q + (c << 6) * QS, v128.load(o), v128.load(o, 16), v128.load(o, 32), v128.load(o, 48), v128.load(so), v128.load(so, 16));
    }
    const mins = q4kminsV(v128.load(u, 384), v128.load(u, 400), M + 80);
    const dx = load<f32>(M);
    acc = addScaled(acc, isum, load<f32>(u, 416) * dx);
    corr = addScaled(corr, mins, load<f32>(u, 420) * dx);
  }
  return hsum(acc) - hsum(corr);
}

function unpackQ6_K(w: usize, nsb: i32, u: usize): void {
  const m30 = i8x16.splat(0x30);
  for (let b = 0; b < nsb; b++, w += 210, u += U6K) {
    for (let h: usize = 0; h < 2; h++) {
      const ql = w + (h << 6);
      const qh = w + 128 + (h << 5);
      const sp = w + 192 + (h << 3);
      for (let half: usize = 0; half < 2; half++) {
        const l = half << 4;
        const a = v128.load(ql + l, 0), c = v128.load(ql + l, 32), hb = v128.load(qh + l);
        const o = u + (((h << 1) + half) << 6), so = u + 256 + (((h << 1) + half) << 6);
        v128.store(o, v128.or(lo4(a), v128.and(i16x8.shl(hb, 4), m30)));
        v128.store(o, v128.or(lo4(c), v128.and(i16x8.shl(hb, 2), m30)), 16);
        v128.store(o, v128.or(hi4(a), v128.and(hb, m30)), 32);
        v128.store(o, v128.or(hi4(c), v128.and(i16x8.shr_u(hb, 2), m30)), 48);
        v128.store(so, q6sc(sp, <i32>half));
        v128.store(so, q6sc(sp, <i32>half + 2), 16);
        v128.store(so, q6sc(sp, <i32>half + 4), 32);
        v128.store(so, q6sc(sp, <i32>half + 6), 48);
      }
    }
    v128.store(u, q6lo(w + 192), 512);
    v128.store(u, q6hi(w + 192), 528);
    store<f32>(u, h2f(w + 208), 544);
  }
}

/** dotQ6_K on an unpacked row. */
function udotQ6_K(u: usize, nsb: i32, q: usize): f32 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nsb; b++, u += U6K, q += BLK256) {
    const M = q + 256 * QS;
    let isum = i32x4.splat(0);
    for (let h: usize = 0; h < 2; h++) {
      const xh = q + (h << 7) * QS;
      for (let half: usize = 0; half < 2; half++) {
        const k = (h << 1) + half;
        const o = u + (k << 6), so = u + 256 + (k << 6);
        isum = q6part4(isum, xh + (half << 4) * QS, v128.load(o), v128.load(o, 16), v128.load(o, 32), v128.load(o, 48),
          v128.load(so), v128.load(so, 16), v128.load(so, 32), v128.load(so, 48));
      }
    }
    isum = i32x4.sub(isum, i32x4.shl(q6offsV(v128.load(u, 512), v128.load(u, 528), M + 80), 5));
    acc = addScaled(acc, isum, load<f32>(u, 544) * load<f32>(M));
  }
  return hsum(acc);
}

/** udotQ4_K for two tokens (at q and q + S) at once, sharing the codes' and scales' loads: [y_q, y_q+S] to o, o + oS. */
function udotQ4_K2(u: usize, nsb: i32, q: usize, S: usize, o: usize, oS: usize): void {
  let acc = f32x4.splat(0), acc2 = f32x4.splat(0);
  let corr = f32x4.splat(0), corr2 = f32x4.splat(0);
  for (let b = 0; b < nsb; b++, u += U4K, q += BLK256) {
    const M = q + 256 * QS;
    let isum = i32x4.splat(0), isum2 = i32x4.splat(0);
    for (let c: usize = 0; c < 4; c++) {
      const o = u + (c << 6), so = u + 256 + (c << 5), xq = q + (c << 6) * QS;
      const l0 = v128.load(o), l1 = v128.load(o, 16), h0 = v128.load(o, 32), h1 = v128.load(o, 48);
      const sa = v128.load(so), sb = v128.load(so, 16);
      isum = q4kpartV(isum, xq, l0, l1, h0, h1, sa, sb);
      isum2 = q4kpartV(isum2, xq + S, l0, l1, h0, h1, sa, sb);
    }
    const M0 = v128.load(u, 384), M1 = v128.load(u, 400), d = load<f32>(u, 416), dmin = load<f32>(u, 420);
    const dx = load<f32>(M), dx2 = load<f32>(M + S);
    acc = addScaled(acc, isum, d * dx);
    corr = addScaled(corr, q4kminsV(M0, M1, M + 80), dmin * dx);
    acc2 = addScaled(acc2, isum2, d * dx2);
    corr2 = addScaled(corr2, q4kminsV(M0, M1, M + S + 80), dmin * dx2);
  }
  store<f32>(o, hsum(acc) - hsum(corr));
  store<f32>(o + oS, hsum(acc2) - hsum(corr2));
}

/** udotQ6_K for two tokens (at q and q + S) at once, sharing the codes' and scales' loads: [y_q, y_q+S] to o, o + oS. */
function udotQ6_K2(u: usize, nsb: i32, q: usize, S: usize, o: usize, oS: usize): void {
  let acc = f32x4.splat(0), acc2 = f32x4.splat(0);
  for (let b = 0; b < nsb; b++, u += U6K, q += BLK256) {
    const M = q + 256 * QS;
    let isum = i32x4.splat(0), isum2 = i32x4.splat(0);
    for (let k: usize = 0; k < 4; k++) {
      const o = u + (k << 6), so = u + 256 + (k << 6);
      const xk = q + (((k >> 1) << 7) + ((k & 1) << 4)) * QS;
      const q1 = v128.load(o), q2 = v128.load(o, 16), q3 = v128.load(o, 32), q4 = v128.load(o, 48);
      const S0 = v128.load(so), S1 = v128.load(so, 16), S2 = v128.load(so, 32), S3 = v128.load(so, 48);
      isum = q6part4(isum, xk, q1, q2, q3, q4, S0, S1, S2, S3);
      isum2 = q6part4(isum2, xk + S, q1, q2, q3, q4, S0, S1, S2, S3);
    }
    const s0 = v128.load(u, 512), s1 = v128.load(u, 528), d = load<f32>(u, 544);
    isum = i32x4.sub(isum, i32x4.shl(q6offsV(s0, s1, M + 80), 5));
    isum2 = i32x4.sub(isum2, i32x4.shl(q6offsV(s0, s1, M + S + 80), 5));
    acc = addScaled(acc, isum, d * load<f32>(M));
    acc2 = addScaled(acc2, isum2, d * load<f32>(M + S));
  }
  store<f32>(o, hsum(acc));
  store<f32>(o + oS, hsum(acc2));
}

/** qmatmul's rows [r0, r1) of a Q4_K / Q6_K matrix, a row unpacked at a time into u (kRowScratch bytes). */
function kmatmul(type: i32, w: usize, rowBytes: usize, cols: i32, r0: i32, r1: i32,
  qa: usize, qaStride: usize, nTok: i32, Out: usize, outStride: usize, u: usize): void {
  const nsb = cols >> 8;
  let wr = w + <usize>r0 * rowBytes;
  for (let r = r0; r < r1; r++, wr += rowBytes) {
    const o = Out + (<usize>r << 2);
    if (type == Q4_K) {
      unpackQ4_K(wr, nsb, u);
      let t = 0;
      for (; t + 2 <= nTok; t += 2) udotQ4_K2(u, nsb, qa + <usize>t * qaStride, qaStride, o + <usize>t * outStride, outStride);
      if (t < nTok) store<f32>(o + <usize>t * outStride, udotQ4_K(u, nsb, qa + <usize>t * qaStride));
    } else {
      unpackQ6_K(wr, nsb, u);
      let t = 0;
      for (; t + 2 <= nTok; t += 2) udotQ6_K2(u, nsb, qa + <usize>t * qaStride, qaStride, o + <usize>t * outStride, outStride);
      if (t < nTok) store<f32>(o + <usize>t * outStride, udotQ6_K(u, nsb, qa + <usize>t * qaStride));
    }
  }
}

/**
 * Rows [r0, r1) for nTok token activations (qa + t·qaStride): Out[t·outStride + r] (bytes).
 * Each weight row is read once from memory and stays in cache for all tokens.
 */
export function qmatmul(type: i32, w: usize, rowBytes: usize, cols: i32, r0: i32, r1: i32,
  qa: usize, qaStride: usize, nTok: i32, Out: usize, outStride: usize, scratch: usize): void {
  if (type == Q4_K || type == Q6_K) {
    kmatmul(type, w, rowBytes, cols, r0, r1, qa, qaStride, nTok, Out, outStride, scratch);
    return;
  }
  // rows in tiles small enough to stay in L1 while the tokens stream past them
  const tile = max(1, min(16, <i32>(<usize>16384 / rowBytes)));
  const lanes = type == Q4_0 || type == Q4_1 || type == Q5_0 || type == Q8_0;
  const nb = cols >> 5;
  const groups = lanes ? nTok >> 2 : 0;
  // two tokens left over share their weight blocks too, and a last single token goes through the
  // same lanes (the 32-block types): every token is then summed in one order, the order of the
  // interleaved decode kernel (asm/r4.ts), so a batch gives each sequence the logits it gets alone
  // (with 8-bit activations another order flips roundings that cascade through the layers)
  const left = nTok - 4 * groups;
  const pair = lanes && left >= 2;
  const single = lanes && (left & 1) == 1;
  // the four-token groups' (the pair's, the single's) scales and sums side by side (scratch: (groups + 2) · nb · 32 bytes)
  if (lanes) for (let g = 0; g < groups; g++) meta4(qa + <usize>(4 * g) * qaStride, qaStride, nb, scratch + <usize>(g * nb) * 32);
  if (pair) meta4(qa + <usize>(4 * groups) * qaStride, qaStride, nb, scratch + <usize>(groups * nb) * 32, 2);
  if (single) meta4(qa + <usize>(nTok - 1) * qaStride, qaStride, nb, scratch + <usize>((groups + 1) * nb) * 32, 1);
  for (let ra = r0; ra < r1; ra += tile) {
    const rb = min(r1, ra + tile);
    for (let g = 0; g < groups; g++) {
      const a = qa + <usize>(4 * g) * qaStride;
      const o = Out + <usize>(4 * g) * outStride;
      let wr = w + <usize>ra * rowBytes;
      for (let r = ra; r < rb; r++, wr += rowBytes) {
        const or = o + (<usize>r << 2);
        const y = dot4lanes(type, wr, wr + rowBytes, a, qaStride, scratch + <usize>(g * nb) * 32);
        store<f32>(or, f32x4.extract_lane(y, 0));
        store<f32>(or + outStride, f32x4.extract_lane(y, 1));
        store<f32>(or + 2 * outStride, f32x4.extract_lane(y, 2));
        store<f32>(or + 3 * outStride, f32x4.extract_lane(y, 3));
      }
    }
    if (pair) {
      const a = qa + <usize>(4 * groups) * qaStride;
      const o = Out + <usize>(4 * groups) * outStride;
      let wr = w + <usize>ra * rowBytes;
      for (let r = ra; r < rb; r++, wr += rowBytes) {
        const or = o + (<usize>r << 2);
        const y = dot2lanes(type, wr, wr + rowBytes, a, qaStride, scratch + <usize>(groups * nb) * 32);
        store<f32>(or, f32x4.extract_lane(y, 0));
        store<f32>(or + outStride, f32x4.extract_lane(y, 1));
      }
    }
    if (single) {
      const o = Out + <usize>(nTok - 1) * outStride;
      let wr = w + <usize>ra * rowBytes;
      for (let r = ra; r < rb; r++, wr += rowBytes) {
        const y = dot2lanes(type, wr, wr + rowBytes, qa + <usize>(nTok - 1) * qaStride, 0, scratch + <usize>((groups + 1) * nb) * 32);
        store<f32>(o + (<usize>r << 2), f32x4.extract_lane(y, 0));
      }
    }
    for (let t = groups * 4 + (pair ? 2 : 0) + (single ? 1 : 0); t < nTok; t++) {
      const a = qa + <usize>t * qaStride;
      const o = Out + <usize>t * outStride;
      let wr = w + <usize>ra * rowBytes;
      for (let r = ra; r < rb; r++, wr += rowBytes) store<f32>(o + (<usize>r << 2), qdotRow(type, wr, rowBytes, a));
    }
  }
}

/** Scratch bytes qmatmul needs per thread. */
export function qmatmulScratch(cols: i32, nTok: i32): usize {
  return max(<usize>(((nTok >> 2) + 2) * (cols >> 5)) * 32 + 64, kRowScratch(cols));
}
