// WebAssembly SIMD kernels for ctxsparse (AssemblyScript; built by `npm run build:wasm`, twice:
// plain SIMD and relaxed SIMD).
//
// Every function works on raw pointers into the one (imported, shared) linear memory that
// src/kernels/wasm/index.ts manages: the weights stay in their ggml blocks where the model
// loader read them; activations, outputs and the KV cache live in the same memory. No allocation
// happens here (runtime stub, nothing is ever `new`ed). Work arrives as task lists (`run`), which
// every thread executes its share of.
//
// This file: the f32-activation path (exact; the float weight types always use it): a block's
// integer codes are widened, converted to f32 and multiplied with x; the block's scale is applied
// once per (sub-)block; an additive min (Q4_1, Q5_1, Q4_K, Q5_K) contributes m·Σx with Σx per
// 32-element group precomputed once per mat-vec. Also matmul on dequantized rows, attention and
// the task runner. The 8-bit path is asm/q8.ts, the element-wise ops asm/ops.ts.
// Block layouts: see src/quant/dequant.ts.

import { BF16, F16, F32, f16, hsum, kMin, kScale, Q4_0, Q4_1, Q4_K, Q5_0, Q5_1, Q5_K, Q6_K, Q8_0, qhMask } from './common';
import { expx4 } from './exp';
export { rmsnorm, activate, combine, rope, keepAbove } from './ops';
import { activate, combine } from './ops';
import { qmatvec, qmatmul, RELAXED } from './q8';
import { tbuild, tmatvec } from './sparse';
export { tkind, tpanelWidth, tpanelBytes, tbuild, tprepare, tplanBytes, tplan } from './sparse';
import { screenColMax, screenGroups, screenMatvec, screenPermute4, screenQuantizeGroup, screenSelectUnits, SCREEN_BLOCK_BYTES } from './screen';
export { screenMatvec, screenSelect, screenAct, screenGroups } from './screen';
export { r4supports, r4packable, r4pack, r4rows } from './r4';
import { r4gather, r4matmul, r4matvec, r4rows } from './r4';
export { r4matmulScratch } from './r4';
export { actBytes, actKind, quantizeAct, qmatvec, qmatmul, qmatmulScratch, setF16Table, RELAXED } from './q8';

/** First byte the host may use (after this module's static data and stack). */
export function heapBase(): usize {
  return __heap_base;
}

/** Whether `type` has a kernel here (the host falls back to its reference otherwise). */
export function supports(type: i32): bool {
  return type == F32 || type == F16 || type == BF16 || type == Q4_0 || type == Q4_1 || type == Q5_0 ||
    type == Q5_1 || type == Q8_0 || type == Q4_K || type == Q5_K || type == Q6_K;
}

// ------------------------------------------------------------------ helpers

// @ts-ignore: decorator
@inline function f16at(p: usize): f32 {
  return f16(<u32>load<u16>(p));
}

/** four u16 halves (in the low 16 bits of i32 lanes) to four f32 */
// @ts-ignore: decorator
@inline function f16x4(h: v128): v128 {
  const em = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  let f = f32x4.mul(em, f32x4.splat(reinterpret<f32>(0x77800000)));
  f = v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
  const infnan = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  return v128.or(f, v128.and(infnan, i32x4.splat(0x7f800000)));
}


/** Σ (16 signed bytes of b) · x[0..16) as an f32x4 of partial sums */
// @ts-ignore: decorator
@inline function dot16s(b: v128, xp: usize): v128 {
  const lo = i16x8.extend_low_i8x16_s(b);
  const hi = i16x8.extend_high_i8x16_s(b);
  const p0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), v128.load(xp, 0));
  const p1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), v128.load(xp, 16));
  const p2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), v128.load(xp, 32));
  const p3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), v128.load(xp, 48));
  return f32x4.add(f32x4.add(p0, p1), f32x4.add(p2, p3));
}

/** Σ (16 unsigned bytes of b) · x[0..16) as an f32x4 of partial sums */
// @ts-ignore: decorator
@inline function dot16u(b: v128, xp: usize): v128 {
  const lo = i16x8.extend_low_i8x16_u(b);
  const hi = i16x8.extend_high_i8x16_u(b);
  const p0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(lo)), v128.load(xp, 0));
  const p1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(lo)), v128.load(xp, 16));
  const p2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(hi)), v128.load(xp, 32));
  const p3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(hi)), v128.load(xp, 48));
  return f32x4.add(f32x4.add(p0, p1), f32x4.add(p2, p3));
}

/** dst[0..16) = (16 signed bytes of b) · s + m */
// @ts-ignore: decorator
@inline function dq16s(b: v128, s: v128, dst: usize): void {
  const lo = i16x8.extend_low_i8x16_s(b);
  const hi = i16x8.extend_high_i8x16_s(b);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), s), 0);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), s), 16);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), s), 32);
  v128.store(dst, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), s), 48);
}

/** dst[0..16) = (16 unsigned bytes of b) · s + m */
// @ts-ignore: decorator
@inline function dq16u(b: v128, s: v128, m: v128, dst: usize): void {
  const lo = i16x8.extend_low_i8x16_u(b);
  const hi = i16x8.extend_high_i8x16_u(b);
  v128.store(dst, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(lo)), s), m), 0);
  v128.store(dst, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(lo)), s), m), 16);
  v128.store(dst, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_u(hi)), s), m), 32);
  v128.store(dst, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_u(hi)), s), m), 48);
}


// ------------------------------------------------------------------ row dots (matvec)
// Each returns Σ_c W[row, c]·x[c] for one row at w; xs = the 32-element sums of x.

function dotF32(w: usize, x: usize, cols: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let c = 0;
  for (; c + 16 <= cols; c += 16) {
    const o = <usize>c << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(w + o, 0), v128.load(x + o, 0)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(w + o, 16), v128.load(x + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(w + o, 32), v128.load(x + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(w + o, 48), v128.load(x + o, 48)));
  }
  for (; c + 4 <= cols; c += 4) {
    const o = <usize>c << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(w + o), v128.load(x + o)));
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; c < cols; c++) s += load<f32>(w + (<usize>c << 2)) * load<f32>(x + (<usize>c << 2));
  return s;
}

function dotF16(w: usize, x: usize, cols: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let c = 0;
  for (; c + 8 <= cols; c += 8) {
    const wp = w + (<usize>c << 1);
    const xp = x + (<usize>c << 2);
    a0 = f32x4.add(a0, f32x4.mul(f16x4(v128.load16x4_u(wp, 0)), v128.load(xp, 0)));
    a1 = f32x4.add(a1, f32x4.mul(f16x4(v128.load16x4_u(wp, 8)), v128.load(xp, 16)));
  }
  let s = hsum(f32x4.add(a0, a1));
  for (; c < cols; c++) s += f16at(w + (<usize>c << 1)) * load<f32>(x + (<usize>c << 2));
  return s;
}

function dotBF16(w: usize, x: usize, cols: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let c = 0;
  for (; c + 8 <= cols; c += 8) {
    const wp = w + (<usize>c << 1);
    const xp = x + (<usize>c << 2);
    a0 = f32x4.add(a0, f32x4.mul(i32x4.shl(v128.load16x4_u(wp, 0), 16), v128.load(xp, 0)));
    a1 = f32x4.add(a1, f32x4.mul(i32x4.shl(v128.load16x4_u(wp, 8), 16), v128.load(xp, 16)));
  }
  let s = hsum(f32x4.add(a0, a1));
  for (; c < cols; c++) s += reinterpret<f32>(<u32>load<u16>(w + (<usize>c << 1)) << 16) * load<f32>(x + (<usize>c << 2));
  return s;
}

function dotQ4_0(w: usize, x: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  const m4 = i8x16.splat(0x0f), k8 = i8x16.splat(8);
  for (let b = 0; b < nb; b++, w += 18, x += 128) {
    const v = v128.load(w, 2);
    const lo = i8x16.sub(v128.and(v, m4), k8);
    const hi = i8x16.sub(i8x16.shr_u(v, 4), k8);
    const s = f32x4.add(dot16s(lo, x), dot16s(hi, x + 64));
    acc = f32x4.add(acc, f32x4.mul(s, f32x4.splat(f16at(w))));
  }
  return hsum(acc);
}

function dotQ4_1(w: usize, x: usize, xs: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  let ms: f32 = 0;
  const m4 = i8x16.splat(0x0f);
  for (let b = 0; b < nb; b++, w += 20, x += 128, xs += 4) {
    const v = v128.load(w, 4);
    const s = f32x4.add(dot16u(v128.and(v, m4), x), dot16u(i8x16.shr_u(v, 4), x + 64));
    acc = f32x4.add(acc, f32x4.mul(s, f32x4.splat(f16at(w))));
    ms += f16at(w + 2) * load<f32>(xs);
  }
  return hsum(acc) + ms;
}

function dotQ5_0(w: usize, x: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  const m4 = i8x16.splat(0x0f), k16 = i8x16.splat(-16);
  for (let b = 0; b < nb; b++, w += 22, x += 128) {
    const qh = load<u32>(w, 2);
    const v = v128.load(w, 6);
    // q - 16 = nibble - (5th bit ? 0 : 16)
    const lo = i8x16.add(v128.and(v, m4), v128.andnot(k16, qhMask(qh, false)));
    const hi = i8x16.add(i8x16.shr_u(v, 4), v128.andnot(k16, qhMask(qh, true)));
    const s = f32x4.add(dot16s(lo, x), dot16s(hi, x + 64));
    acc = f32x4.add(acc, f32x4.mul(s, f32x4.splat(f16at(w))));
  }
  return hsum(acc);
}

function dotQ5_1(w: usize, x: usize, xs: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  let ms: f32 = 0;
  const m4 = i8x16.splat(0x0f), k16 = i8x16.splat(16);
  for (let b = 0; b < nb; b++, w += 24, x += 128, xs += 4) {
    const qh = load<u32>(w, 4);
    const v = v128.load(w, 8);
    const lo = v128.or(v128.and(v, m4), v128.and(k16, qhMask(qh, false)));
    const hi = v128.or(i8x16.shr_u(v, 4), v128.and(k16, qhMask(qh, true)));
    const s = f32x4.add(dot16u(lo, x), dot16u(hi, x + 64));
    acc = f32x4.add(acc, f32x4.mul(s, f32x4.splat(f16at(w))));
    ms += f16at(w + 2) * load<f32>(xs);
  }
  return hsum(acc) + ms;
}

function dotQ8_0(w: usize, x: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++, w += 34, x += 128) {
    const s = f32x4.add(dot16s(v128.load(w, 2), x), dot16s(v128.load(w, 18), x + 64));
    acc = f32x4.add(acc, f32x4.mul(s, f32x4.splat(f16at(w))));
  }
  return hsum(acc);
}

function dotQ4_K(w: usize, x: usize, xs: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  let tot: f32 = 0;
  const m4 = i8x16.splat(0x0f);
  for (let b = 0; b < nb; b++, w += 144, x += 1024, xs += 32) {
    const d = f16at(w);
    const p = w + 4;
    let ms: f32 = 0;
    for (let c = 0; c < 4; c++) {
      const q = w + 16 + (<usize>c << 5);
      const xc = x + (<usize>c << 8);
      const v0 = v128.load(q, 0), v1 = v128.load(q, 16);
      const a1 = f32x4.add(dot16u(v128.and(v0, m4), xc), dot16u(v128.and(v1, m4), xc + 64));
      const a2 = f32x4.add(dot16u(i8x16.shr_u(v0, 4), xc + 128), dot16u(i8x16.shr_u(v1, 4), xc + 192));
      acc = f32x4.add(acc, f32x4.add(
        f32x4.mul(a1, f32x4.splat(d * <f32>kScale(p, 2 * c))),
        f32x4.mul(a2, f32x4.splat(d * <f32>kScale(p, 2 * c + 1)))));
      ms += <f32>kMin(p, 2 * c) * load<f32>(xs + (<usize>c << 3)) + <f32>kMin(p, 2 * c + 1) * load<f32>(xs + (<usize>c << 3), 4);
    }
    tot -= f16at(w + 2) * ms;
  }
  return hsum(acc) + tot;
}

function dotQ5_K(w: usize, x: usize, xs: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  let tot: f32 = 0;
  const m4 = i8x16.splat(0x0f), bit4 = i8x16.splat(0x10);
  for (let b = 0; b < nb; b++, w += 176, x += 1024, xs += 32) {
    const d = f16at(w);
    const p = w + 4;
    let h0 = v128.load(w, 16), h1 = v128.load(w, 32);
    let ms: f32 = 0;
    for (let c = 0; c < 4; c++) {
      const q = w + 48 + (<usize>c << 5);
      const xc = x + (<usize>c << 8);
      const v0 = v128.load(q, 0), v1 = v128.load(q, 16);
      // bit 2c of qh -> bit 4 of the low-nibble codes, bit 2c+1 -> of the high ones
      const l0 = v128.or(v128.and(v0, m4), v128.and(i8x16.shl(h0, 4), bit4));
      const l1 = v128.or(v128.and(v1, m4), v128.and(i8x16.shl(h1, 4), bit4));
      const u0 = v128.or(i8x16.shr_u(v0, 4), v128.and(i8x16.shl(h0, 3), bit4));
      const u1 = v128.or(i8x16.shr_u(v1, 4), v128.and(i8x16.shl(h1, 3), bit4));
      h0 = i8x16.shr_u(h0, 2);
      h1 = i8x16.shr_u(h1, 2);
      const a1 = f32x4.add(dot16u(l0, xc), dot16u(l1, xc + 64));
      const a2 = f32x4.add(dot16u(u0, xc + 128), dot16u(u1, xc + 192));
      acc = f32x4.add(acc, f32x4.add(
        f32x4.mul(a1, f32x4.splat(d * <f32>kScale(p, 2 * c))),
        f32x4.mul(a2, f32x4.splat(d * <f32>kScale(p, 2 * c + 1)))));
      ms += <f32>kMin(p, 2 * c) * load<f32>(xs + (<usize>c << 3)) + <f32>kMin(p, 2 * c + 1) * load<f32>(xs + (<usize>c << 3), 4);
    }
    tot -= f16at(w + 2) * ms;
  }
  return hsum(acc) + tot;
}

function dotQ6_K(w: usize, x: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  const m4 = i8x16.splat(0x0f), m30 = i8x16.splat(0x30), k32 = i8x16.splat(32);
  for (let b = 0; b < nb; b++, w += 210, x += 1024) {
    const d = f16at(w + 208);
    for (let h = 0; h < 2; h++) {
      const lo = w + (<usize>h << 6);
      const hi = w + 128 + (<usize>h << 5);
      const sc = w + 192 + (<usize>h << 3);
      const xh = x + (<usize>h << 9);
      for (let half = 0; half < 2; half++) {
        const l = <usize>half << 4;
        const a = v128.load(lo + l, 0), c = v128.load(lo + l, 32), qh = v128.load(hi + l);
        const q1 = i8x16.sub(v128.or(v128.and(a, m4), v128.and(i8x16.shl(qh, 4), m30)), k32);
        const q2 = i8x16.sub(v128.or(v128.and(c, m4), v128.and(i8x16.shl(qh, 2), m30)), k32);
        const q3 = i8x16.sub(v128.or(i8x16.shr_u(a, 4), v128.and(qh, m30)), k32);
        const q4 = i8x16.sub(v128.or(i8x16.shr_u(c, 4), v128.and(i8x16.shr_u(qh, 2), m30)), k32);
        const xl = xh + (l << 2);
        const s = sc + l / 16;
        acc = f32x4.add(acc, f32x4.add(
          f32x4.add(
            f32x4.mul(dot16s(q1, xl), f32x4.splat(d * <f32>load<i8>(s, 0))),
            f32x4.mul(dot16s(q2, xl + 128), f32x4.splat(d * <f32>load<i8>(s, 2)))),
          f32x4.add(
            f32x4.mul(dot16s(q3, xl + 256), f32x4.splat(d * <f32>load<i8>(s, 4))),
            f32x4.mul(dot16s(q4, xl + 384), f32x4.splat(d * <f32>load<i8>(s, 6))))));
      }
    }
  }
  return hsum(acc);
}

// @ts-ignore: decorator
@inline function dotRow(type: i32, w: usize, x: usize, xs: usize, cols: i32): f32 {
  switch (type) {
    case F32: return dotF32(w, x, cols);
    case F16: return dotF16(w, x, cols);
    case BF16: return dotBF16(w, x, cols);
    case Q4_0: return dotQ4_0(w, x, cols >> 5);
    case Q4_1: return dotQ4_1(w, x, xs, cols >> 5);
    case Q5_0: return dotQ5_0(w, x, cols >> 5);
    case Q5_1: return dotQ5_1(w, x, xs, cols >> 5);
    case Q8_0: return dotQ8_0(w, x, cols >> 5);
    case Q4_K: return dotQ4_K(w, x, xs, cols >> 8);
    case Q5_K: return dotQ5_K(w, x, xs, cols >> 8);
    case Q6_K: return dotQ6_K(w, x, cols >> 8);
    default: return NaN;
  }
}

/** xs[g] = Σ x[32g .. 32g+32) for the types with a min term (cols a multiple of 32). */
export function blockSums(x: usize, cols: i32, xs: usize): void {
  for (let g = 0; g < (cols >> 5); g++, x += 128, xs += 4) {
    const a = f32x4.add(f32x4.add(v128.load(x, 0), v128.load(x, 16)), f32x4.add(v128.load(x, 32), v128.load(x, 48)));
    const b = f32x4.add(f32x4.add(v128.load(x, 64), v128.load(x, 80)), f32x4.add(v128.load(x, 96), v128.load(x, 112)));
    store<f32>(xs, hsum(f32x4.add(a, b)));
  }
}

export function needsSums(type: i32): bool {
  return type == Q4_1 || type == Q5_1 || type == Q4_K || type == Q5_K;
}

/**
 * The f32-activation mat-vec, rows i in [i0, i1): out[i] = W[r,:]·x with r = i, or r = rowIdx[i]
 * when rowIdx != 0 (out compacted; the host scatters). xs: the 32-element sums of x (blockSums),
 * for the types with a min term.
 */
export function fmatvec(type: i32, w: usize, rowBytes: usize, cols: i32, rowIdx: usize, i0: i32, i1: i32,
  x: usize, xs: usize, out: usize): void {
  if (rowIdx == 0) {
    let wr = w + <usize>i0 * rowBytes;
    for (let i = i0; i < i1; i++, wr += rowBytes) store<f32>(out + (<usize>i << 2), dotRow(type, wr, x, xs, cols));
  } else {
    for (let i = i0; i < i1; i++) {
      const r = <usize>load<i32>(rowIdx + (<usize>i << 2));
      store<f32>(out + (<usize>i << 2), dotRow(type, w + r * rowBytes, x, xs, cols));
    }
  }
}

// ------------------------------------------------------------------ row dequantizers (matmul)

/** dst[0..cols) = row at w as f32 (cols: a whole number of blocks). */
function dequantRow(type: i32, w: usize, cols: i32, dst: usize): void {
  const m4 = i8x16.splat(0x0f);
  switch (type) {
    case F16: {
      let c = 0;
      for (; c + 4 <= cols; c += 4) v128.store(dst + (<usize>c << 2), f16x4(v128.load16x4_u(w + (<usize>c << 1))));
      for (; c < cols; c++) store<f32>(dst + (<usize>c << 2), f16at(w + (<usize>c << 1)));
      break;
    }
    case BF16: {
      let c = 0;
      for (; c + 4 <= cols; c += 4) v128.store(dst + (<usize>c << 2), i32x4.shl(v128.load16x4_u(w + (<usize>c << 1)), 16));
      for (; c < cols; c++) store<u32>(dst + (<usize>c << 2), <u32>load<u16>(w + (<usize>c << 1)) << 16);
      break;
    }
    case Q4_0: {
      const k8 = i8x16.splat(8);
      for (let b = 0; b < (cols >> 5); b++, w += 18, dst += 128) {
        const v = v128.load(w, 2);
        const d = f32x4.splat(f16at(w));
        dq16s(i8x16.sub(v128.and(v, m4), k8), d, dst);
        dq16s(i8x16.sub(i8x16.shr_u(v, 4), k8), d, dst + 64);
      }
      break;
    }
    case Q4_1: {
      for (let b = 0; b < (cols >> 5); b++, w += 20, dst += 128) {
        const v = v128.load(w, 4);
        const d = f32x4.splat(f16at(w)), m = f32x4.splat(f16at(w + 2));
        dq16u(v128.and(v, m4), d, m, dst);
        dq16u(i8x16.shr_u(v, 4), d, m, dst + 64);
      }
      break;
    }
    case Q5_0: {
      const k16 = i8x16.splat(-16);
      for (let b = 0; b < (cols >> 5); b++, w += 22, dst += 128) {
        const qh = load<u32>(w, 2);
        const v = v128.load(w, 6);
        const d = f32x4.splat(f16at(w));
        dq16s(i8x16.add(v128.and(v, m4), v128.andnot(k16, qhMask(qh, false))), d, dst);
        dq16s(i8x16.add(i8x16.shr_u(v, 4), v128.andnot(k16, qhMask(qh, true))), d, dst + 64);
      }
      break;
    }
    case Q5_1: {
      const k16 = i8x16.splat(16);
      for (let b = 0; b < (cols >> 5); b++, w += 24, dst += 128) {
        const qh = load<u32>(w, 4);
        const v = v128.load(w, 8);
        const d = f32x4.splat(f16at(w)), m = f32x4.splat(f16at(w + 2));
        dq16u(v128.or(v128.and(v, m4), v128.and(k16, qhMask(qh, false))), d, m, dst);
        dq16u(v128.or(i8x16.shr_u(v, 4), v128.and(k16, qhMask(qh, true))), d, m, dst + 64);
      }
      break;
    }
    case Q8_0: {
      for (let b = 0; b < (cols >> 5); b++, w += 34, dst += 128) {
        const d = f32x4.splat(f16at(w));
        dq16s(v128.load(w, 2), d, dst);
        dq16s(v128.load(w, 18), d, dst + 64);
      }
      break;
    }
    case Q4_K: {
      for (let b = 0; b < (cols >> 8); b++, w += 144, dst += 1024) {
        const d = f16at(w), dmin = f16at(w + 2);
        const p = w + 4;
        for (let c = 0; c < 4; c++) {
          const q = w + 16 + (<usize>c << 5);
          const o = dst + (<usize>c << 8);
          const v0 = v128.load(q, 0), v1 = v128.load(q, 16);
          const d1 = f32x4.splat(d * <f32>kScale(p, 2 * c)), m1 = f32x4.splat(-(dmin * <f32>kMin(p, 2 * c)));
          const d2 = f32x4.splat(d * <f32>kScale(p, 2 * c + 1)), m2 = f32x4.splat(-(dmin * <f32>kMin(p, 2 * c + 1)));
          dq16u(v128.and(v0, m4), d1, m1, o);
          dq16u(v128.and(v1, m4), d1, m1, o + 64);
          dq16u(i8x16.shr_u(v0, 4), d2, m2, o + 128);
          dq16u(i8x16.shr_u(v1, 4), d2, m2, o + 192);
        }
      }
      break;
    }
    case Q5_K: {
      const bit4 = i8x16.splat(0x10);
      for (let b = 0; b < (cols >> 8); b++, w += 176, dst += 1024) {
        const d = f16at(w), dmin = f16at(w + 2);
        const p = w + 4;
        let h0 = v128.load(w, 16), h1 = v128.load(w, 32);
        for (let c = 0; c < 4; c++) {
          const q = w + 48 + (<usize>c << 5);
          const o = dst + (<usize>c << 8);
          const v0 = v128.load(q, 0), v1 = v128.load(q, 16);
          const d1 = f32x4.splat(d * <f32>kScale(p, 2 * c)), m1 = f32x4.splat(-(dmin * <f32>kMin(p, 2 * c)));
          const d2 = f32x4.splat(d * <f32>kScale(p, 2 * c + 1)), m2 = f32x4.splat(-(dmin * <f32>kMin(p, 2 * c + 1)));
          dq16u(v128.or(v128.and(v0, m4), v128.and(i8x16.shl(h0, 4), bit4)), d1, m1, o);
          dq16u(v128.or(v128.and(v1, m4), v128.and(i8x16.shl(h1, 4), bit4)), d1, m1, o + 64);
          dq16u(v128.or(i8x16.shr_u(v0, 4), v128.and(i8x16.shl(h0, 3), bit4)), d2, m2, o + 128);
          dq16u(v128.or(i8x16.shr_u(v1, 4), v128.and(i8x16.shl(h1, 3), bit4)), d2, m2, o + 192);
          h0 = i8x16.shr_u(h0, 2);
          h1 = i8x16.shr_u(h1, 2);
        }
      }
      break;
    }
    case Q6_K: {
      const m30 = i8x16.splat(0x30), k32 = i8x16.splat(32);
      for (let b = 0; b < (cols >> 8); b++, w += 210, dst += 1024) {
        const d = f16at(w + 208);
        for (let h = 0; h < 2; h++) {
          const lo = w + (<usize>h << 6);
          const hi = w + 128 + (<usize>h << 5);
          const sc = w + 192 + (<usize>h << 3);
          const o = dst + (<usize>h << 9);
          for (let half = 0; half < 2; half++) {
            const l = <usize>half << 4;
            const a = v128.load(lo + l, 0), c = v128.load(lo + l, 32), qh = v128.load(hi + l);
            const s = sc + l / 16;
            const ol = o + (l << 2);
            dq16s(i8x16.sub(v128.or(v128.and(a, m4), v128.and(i8x16.shl(qh, 4), m30)), k32), f32x4.splat(d * <f32>load<i8>(s, 0)), ol);
            dq16s(i8x16.sub(v128.or(v128.and(c, m4), v128.and(i8x16.shl(qh, 2), m30)), k32), f32x4.splat(d * <f32>load<i8>(s, 2)), ol + 128);
            dq16s(i8x16.sub(v128.or(i8x16.shr_u(a, 4), v128.and(qh, m30)), k32), f32x4.splat(d * <f32>load<i8>(s, 4)), ol + 256);
            dq16s(i8x16.sub(v128.or(i8x16.shr_u(c, 4), v128.and(i8x16.shr_u(qh, 2), m30)), k32), f32x4.splat(d * <f32>load<i8>(s, 6)), ol + 384);
          }
        }
      }
      break;
    }
    default: unreachable();
  }
}

/** Public for tests: dst[0..cols) = the row at w, dequantized. */
export function dequantize(type: i32, w: usize, cols: i32, dst: usize): void {
  if (type == F32) memory.copy(dst, w, <usize>cols << 2);
  else dequantRow(type, w, cols, dst);
}

// ------------------------------------------------------------------ matmul

/** Out[t*rows + r0 .. +2] = (w0, w1) · X[t] for t in t0..t0+4 (two f32 rows, four token rows). */
// @ts-ignore: decorator
@inline function tile2x4(w0: usize, w1: usize, x0: usize, xstride: usize, cols: i32, o: usize, ostride: usize): void {
  const x1 = x0 + xstride, x2 = x1 + xstride, x3 = x2 + xstride;
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a02 = f32x4.splat(0), a03 = f32x4.splat(0);
  let a10 = f32x4.splat(0), a11 = f32x4.splat(0), a12 = f32x4.splat(0), a13 = f32x4.splat(0);
  const n4 = <usize>(cols & ~3) << 2;
  for (let k: usize = 0; k < n4; k += 16) {
    const u = v128.load(w0 + k), v = v128.load(w1 + k);
    const y0 = v128.load(x0 + k), y1 = v128.load(x1 + k), y2 = v128.load(x2 + k), y3 = v128.load(x3 + k);
    a00 = f32x4.add(a00, f32x4.mul(u, y0)); a10 = f32x4.add(a10, f32x4.mul(v, y0));
    a01 = f32x4.add(a01, f32x4.mul(u, y1)); a11 = f32x4.add(a11, f32x4.mul(v, y1));
    a02 = f32x4.add(a02, f32x4.mul(u, y2)); a12 = f32x4.add(a12, f32x4.mul(v, y2));
    a03 = f32x4.add(a03, f32x4.mul(u, y3)); a13 = f32x4.add(a13, f32x4.mul(v, y3));
  }
  let s00 = hsum(a00), s01 = hsum(a01), s02 = hsum(a02), s03 = hsum(a03);
  let s10 = hsum(a10), s11 = hsum(a11), s12 = hsum(a12), s13 = hsum(a13);
  for (let k = n4; k < (<usize>cols << 2); k += 4) {
    const u = load<f32>(w0 + k), v = load<f32>(w1 + k);
    const y0 = load<f32>(x0 + k), y1 = load<f32>(x1 + k), y2 = load<f32>(x2 + k), y3 = load<f32>(x3 + k);
    s00 += u * y0; s01 += u * y1; s02 += u * y2; s03 += u * y3;
    s10 += v * y0; s11 += v * y1; s12 += v * y2; s13 += v * y3;
  }
  store<f32>(o, s00); store<f32>(o, s10, 4); o += ostride;
  store<f32>(o, s01); store<f32>(o, s11, 4); o += ostride;
  store<f32>(o, s02); store<f32>(o, s12, 4); o += ostride;
  store<f32>(o, s03); store<f32>(o, s13, 4);
}

/** Out[t*rows + r] = w · X[t] for t in t0..t0+4 (one f32 row). */
// @ts-ignore: decorator
@inline function tile1x4(w0: usize, x0: usize, xstride: usize, cols: i32, o: usize, ostride: usize): void {
  const x1 = x0 + xstride, x2 = x1 + xstride, x3 = x2 + xstride;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const n4 = <usize>(cols & ~3) << 2;
  for (let k: usize = 0; k < n4; k += 16) {
    const u = v128.load(w0 + k);
    a0 = f32x4.add(a0, f32x4.mul(u, v128.load(x0 + k)));
    a1 = f32x4.add(a1, f32x4.mul(u, v128.load(x1 + k)));
    a2 = f32x4.add(a2, f32x4.mul(u, v128.load(x2 + k)));
    a3 = f32x4.add(a3, f32x4.mul(u, v128.load(x3 + k)));
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (let k = n4; k < (<usize>cols << 2); k += 4) {
    const u = load<f32>(w0 + k);
    s0 += u * load<f32>(x0 + k); s1 += u * load<f32>(x1 + k); s2 += u * load<f32>(x2 + k); s3 += u * load<f32>(x3 + k);
  }
  store<f32>(o, s0); o += ostride;
  store<f32>(o, s1); o += ostride;
  store<f32>(o, s2); o += ostride;
  store<f32>(o, s3);
}

/**
 * Out[t·ostride + r] = W[r,:]·X[t] (f32 activations) for rows r in [r0, r1), t < nPad. Each row's
 * blocks are dequantized once into wbuf (2·cols f32, 16-byte aligned) and reused for all token
 * rows (two weight rows at a time). Token rows are padded by the host to a multiple of 4.
 */
export function fmatmul(type: i32, w: usize, rowBytes: usize, cols: i32, r0: i32, r1: i32, X: usize, nPad: i32,
  Out: usize, ostride: usize, wbuf: usize): void {
  const xstride = <usize>cols << 2;
  const wb1 = wbuf + (<usize>((cols + 3) & ~3) << 2);
  const direct = type == F32;
  let r = r0;
  for (; r + 2 <= r1; r += 2) {
    let w0 = w + <usize>r * rowBytes, w1 = w0 + rowBytes;
    if (!direct) {
      dequantRow(type, w0, cols, wbuf);
      dequantRow(type, w1, cols, wb1);
      w0 = wbuf;
      w1 = wb1;
    }
    for (let t = 0; t < nPad; t += 4) {
      tile2x4(w0, w1, X + <usize>t * xstride, xstride, cols, Out + <usize>t * ostride + (<usize>r << 2), ostride);
    }
  }
  if (r < r1) {
    let w0 = w + <usize>r * rowBytes;
    if (!direct) {
      dequantRow(type, w0, cols, wbuf);
      w0 = wbuf;
    }
    for (let t = 0; t < nPad; t += 4) {
      tile1x4(w0, X + <usize>t * xstride, xstride, cols, Out + <usize>t * ostride + (<usize>r << 2), ostride);
    }
  }
}

// ------------------------------------------------------------------ attention
// One query position over n cached positions, per selected head h (kv head h / group):
//   s_j = (q_h · k_j)·scale, p = softmax(s), out_h = Σ_j p_j·v_j.
// q and out (and the head list and the scores) are in the scratch region; k and v point into the
// KV cache itself (position `start` of one layer, rows kStride / vStride bytes apart), read in place.
//
// The heads of one kv head are attended together, two at a time: a pair shares every load of
// K and V, and its eight independent sums keep both FMA pipes busy within the sixteen vector
// registers V8 allocates (four keys × two halves of one head needed more, and V8 then kept two
// sums on the stack, a store and a load in every step of their chains: half the speed). A head
// left over goes alone through the same chains, so every head gets the same sums whichever way
// it is grouped (a head selection, a decode step, a batch).

/** a·b + c, fused where relaxed SIMD allows it (one instruction where a multiply and an add were two). */
// @ts-ignore: decorator
@inline function mad(a: v128, b: v128, c: v128): v128 {
  return RELAXED ? f32x4.relaxed_madd(a, b, c) : f32x4.add(f32x4.mul(a, b), c);
}

/** [Σ lanes of a, Σ b, Σ c, Σ d] (f32x4), one fixed order. */
// @ts-ignore: decorator
@inline function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const cd = f32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return f32x4.add(i32x4.shuffle(ab, cd, 0, 2, 4, 6), i32x4.shuffle(ab, cd, 1, 3, 5, 7));
}

/** The last d % 4 elements of q · k_t for four keys (scalar), as [t0, t1, t2, t3]. */
// @ts-ignore: decorator
@inline function tail4(q: usize, k0: usize, k1: usize, k2: usize, k3: usize, i: usize, db: usize): v128 {
  let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
  for (; i < db; i += 4) {
    const x = load<f32>(q + i);
    t0 += x * load<f32>(k0 + i); t1 += x * load<f32>(k1 + i); t2 += x * load<f32>(k2 + i); t3 += x * load<f32>(k3 + i);
  }
  return f32x4(t0, t1, t2, t3);
}

/**
 * Scores of two heads (queries qa, qb) against four keys k0..k3 over d elements, times sc, to
 * outA / outB: one sum per head and key over the 16-byte steps, then the lanes, then the tail.
 */
// @ts-ignore: decorator
@inline function score2x4(qa: usize, qb: usize, k0: usize, k1: usize, k2: usize, k3: usize, d: i32, sc: v128, outA: usize, outB: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const d4 = <usize>(d & ~3) << 2, db = <usize>d << 2;
  let i: usize = 0;
  for (; i < d4; i += 16) {
    const x = v128.load(qa + i), y = v128.load(qb + i);
    const w0 = v128.load(k0 + i), w1 = v128.load(k1 + i), w2 = v128.load(k2 + i), w3 = v128.load(k3 + i);
    a0 = mad(x, w0, a0); a1 = mad(x, w1, a1); a2 = mad(x, w2, a2); a3 = mad(x, w3, a3);
    b0 = mad(y, w0, b0); b1 = mad(y, w1, b1); b2 = mad(y, w2, b2); b3 = mad(y, w3, b3);
  }
  let sa = hsum4(a0, a1, a2, a3), sb = hsum4(b0, b1, b2, b3);
  if (i < db) {
    sa = f32x4.add(sa, tail4(qa, k0, k1, k2, k3, i, db));
    sb = f32x4.add(sb, tail4(qb, k0, k1, k2, k3, i, db));
  }
  v128.store(outA, f32x4.mul(sa, sc));
  v128.store(outB, f32x4.mul(sb, sc));
}

/** score2x4 for one head: the same sums (four chains instead of eight). */
// @ts-ignore: decorator
@inline function score1x4(qa: usize, k0: usize, k1: usize, k2: usize, k3: usize, d: i32, sc: v128, outA: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const d4 = <usize>(d & ~3) << 2, db = <usize>d << 2;
  let i: usize = 0;
  for (; i < d4; i += 16) {
    const x = v128.load(qa + i);
    a0 = mad(x, v128.load(k0 + i), a0); a1 = mad(x, v128.load(k1 + i), a1);
    a2 = mad(x, v128.load(k2 + i), a2); a3 = mad(x, v128.load(k3 + i), a3);
  }
  let sa = hsum4(a0, a1, a2, a3);
  if (i < db) sa = f32x4.add(sa, tail4(qa, k0, k1, k2, k3, i, db));
  v128.store(outA, f32x4.mul(sa, sc));
}

// The weighted sum out_h = inv_h · Σ_j p_h[j]·v_j, a chunk of positions at a time: a chunk of V
// (WS_CHUNK_BYTES of rows, contiguous) stays in L1 while the heads of the group and the strips of
// columns pass over it, the partial sums kept in a scratch row per head (each sum runs over the
// positions in order, only stored between chunks). Strips that ran over all positions read V at
// a stride of a whole cache row per position, whose lines crowd a few cache sets.

/** bytes of V per chunk: half of L1 */
const WS_CHUNK_BYTES: usize = 16384;

/** accA / accB [0..16) += Σ_{j0≤j<j1} pA[j]·v_j (pB[j]·v_j) over 16 columns at v: two heads. */
// @ts-ignore: decorator
@inline function strip2x16(pA: usize, pB: usize, v: usize, vStride: usize, j0: i32, j1: i32, accA: usize, accB: usize): void {
  let a0 = v128.load(accA, 0), a1 = v128.load(accA, 16), a2 = v128.load(accA, 32), a3 = v128.load(accA, 48);
  let b0 = v128.load(accB, 0), b1 = v128.load(accB, 16), b2 = v128.load(accB, 32), b3 = v128.load(accB, 48);
  let r = v + <usize>j0 * vStride;
  for (let j = j0; j < j1; j++, r += vStride) {
    const x = v128.load32_splat(pA + (<usize>j << 2)), y = v128.load32_splat(pB + (<usize>j << 2));
    const v0 = v128.load(r, 0), v1 = v128.load(r, 16), v2 = v128.load(r, 32), v3 = v128.load(r, 48);
    a0 = mad(x, v0, a0); a1 = mad(x, v1, a1); a2 = mad(x, v2, a2); a3 = mad(x, v3, a3);
    b0 = mad(y, v0, b0); b1 = mad(y, v1, b1); b2 = mad(y, v2, b2); b3 = mad(y, v3, b3);
  }
  v128.store(accA, a0, 0); v128.store(accA, a1, 16); v128.store(accA, a2, 32); v128.store(accA, a3, 48);
  v128.store(accB, b0, 0); v128.store(accB, b1, 16); v128.store(accB, b2, 32); v128.store(accB, b3, 48);
}
/** strip2x16 for one head. */
// @ts-ignore: decorator
@inline function strip1x16(pA: usize, v: usize, vStride: usize, j0: i32, j1: i32, accA: usize): void {
  let a0 = v128.load(accA, 0), a1 = v128.load(accA, 16), a2 = v128.load(accA, 32), a3 = v128.load(accA, 48);
  let r = v + <usize>j0 * vStride;
  for (let j = j0; j < j1; j++, r += vStride) {
    const x = v128.load32_splat(pA + (<usize>j << 2));
    a0 = mad(x, v128.load(r, 0), a0); a1 = mad(x, v128.load(r, 16), a1);
    a2 = mad(x, v128.load(r, 32), a2); a3 = mad(x, v128.load(r, 48), a3);
  }
  v128.store(accA, a0, 0); v128.store(accA, a1, 16); v128.store(accA, a2, 32); v128.store(accA, a3, 48);
}
/** 4 columns, one head. */
// @ts-ignore: decorator
@inline function strip1x4(p: usize, v: usize, vStride: usize, j0: i32, j1: i32, acc: usize): void {
  let a = v128.load(acc);
  let r = v + <usize>j0 * vStride;
  for (let j = j0; j < j1; j++, r += vStride) a = mad(v128.load32_splat(p + (<usize>j << 2)), v128.load(r), a);
  v128.store(acc, a);
}
/** 1 column, one head. */
// @ts-ignore: decorator
@inline function strip1x1(p: usize, v: usize, vStride: usize, j0: i32, j1: i32, acc: usize): void {
  let s = load<f32>(acc);
  let r = v + <usize>j0 * vStride;
  for (let j = j0; j < j1; j++, r += vStride) s += load<f32>(p + (<usize>j << 2)) * load<f32>(r);
  store<f32>(acc, s);
}

/**
 * out_h[0..d) = inv_h · Σ_{j<n} p_h[j]·v_j for gs heads h < gs sharing v (v_j = v + j·vStride):
 * p_h = p + h·pStride, inv_h at invs + 4h, out_h = out + h·oStride; acc: gs·d f32 of scratch.
 */
function weightedSums(p: usize, pStride: usize, invs: usize, gs: i32, v: usize, vStride: usize, n: i32, d: i32, out: usize, oStride: usize, acc: usize): void {
  const db = <usize>d << 2, d16 = <usize>(d & ~15) << 2;
  memory.fill(acc, 0, <usize>gs * db);
  const chunk = <i32>max<usize>(4, min<usize>(64, WS_CHUNK_BYTES / vStride));
  for (let j0 = 0; j0 < n; j0 += chunk) {
    const j1 = min(n, j0 + chunk);
    let h = 0;
    for (; h + 2 <= gs; h += 2) {
      const pA = p + <usize>h * pStride, aA = acc + <usize>h * db;
      for (let i: usize = 0; i < d16; i += 64) strip2x16(pA, pA + pStride, v + i, vStride, j0, j1, aA + i, aA + db + i);
    }
    if (h < gs) {
      const pA = p + <usize>h * pStride, aA = acc + <usize>h * db;
      for (let i: usize = 0; i < d16; i += 64) strip1x16(pA, v + i, vStride, j0, j1, aA + i);
    }
    if (d16 < db) {
      // the last d % 16 columns, head by head
      for (h = 0; h < gs; h++) {
        const ph = p + <usize>h * pStride, ah = acc + <usize>h * db;
        let i = d16;
        for (; i + 16 <= db; i += 16) strip1x4(ph, v + i, vStride, j0, j1, ah + i);
        for (; i < db; i += 4) strip1x1(ph, v + i, vStride, j0, j1, ah + i);
      }
    }
  }
  for (let h = 0; h < gs; h++) {
    const ah = acc + <usize>h * db, oh = out + <usize>h * oStride;
    const inv = load<f32>(invs + (<usize>h << 2)), sv = f32x4.splat(inv);
    let i: usize = 0;
    for (; i + 16 <= db; i += 16) v128.store(oh + i, f32x4.mul(v128.load(ah + i), sv));
    for (; i < db; i += 4) store<f32>(oh + i, load<f32>(ah + i) * inv);
  }
}

/**
 * Attention of gs consecutive query heads that share one kv head: q the first head's query (the
 * others follow, headDim f32 apart), k / v that kv head's first position, out the first head's
 * output (the others follow, headDimV f32 apart). scores: room for gs · (n rounded up to 4, plus
 * 1, plus headDimV) f32.
 * With part ≠ 0 (a chunk of the positions: attentionSplit), out is not written: head h's partial
 * goes to part + h·PART(headDimV) instead — its largest score m, Σ e_j and the unnormalised sums
 * Σ e_j·v_j (e_j = exp(s_j − m)).
 */
function attendGroup(q: usize, k: usize, v: usize, kStride: usize, vStride: usize, n: i32,
  headDim: i32, headDimV: i32, gs: i32, scale: f32, out: usize, scores: usize, part: usize = 0): void {
  const n4 = (n + 3) & ~3;
  const pStride = <usize>n4 << 2;
  const qStride = <usize>headDim << 2;
  const invs = scores + <usize>gs * pStride;
  const sc = f32x4.splat(scale);
  const ninf = f32x4.splat(-Infinity);

  // scores, four keys at a time; the last block repeats its last key in the lanes past n (-inf below)
  for (let j = 0; j < n; j += 4) {
    const kj = k + <usize>j * kStride, last = <usize>(n - 1 - j);
    const k1 = kj + min<usize>(1, last) * kStride, k2 = kj + min<usize>(2, last) * kStride, k3 = kj + min<usize>(3, last) * kStride;
    const o = scores + (<usize>j << 2);
    let h = 0;
    for (; h + 2 <= gs; h += 2) {
      const qa = q + <usize>h * qStride;
      score2x4(qa, qa + qStride, kj, k1, k2, k3, headDim, sc, o + <usize>h * pStride, o + <usize>(h + 1) * pStride);
    }
    if (h < gs) score1x4(q + <usize>h * qStride, kj, k1, k2, k3, headDim, sc, o + <usize>h * pStride);
  }
  if (n & 3) {
    // -inf past n, which exp turns into 0
    const keep = i32x4.lt_s(i32x4(0, 1, 2, 3), i32x4.splat(n & 3));
    for (let h = 0; h < gs; h++) {
      const o = scores + <usize>h * pStride + (<usize>(n & ~3) << 2);
      v128.store(o, v128.bitselect(v128.load(o), ninf, keep));
    }
  }

  // per head: e_j = exp(s_j - max), Σ e_j in f64
  for (let h = 0; h < gs; h++) {
    const ph = scores + <usize>h * pStride;
    let mx = ninf;
    for (let b: usize = 0; b < pStride; b += 16) mx = f32x4.pmax(mx, v128.load(ph + b));
    mx = f32x4.pmax(mx, i32x4.shuffle(mx, mx, 2, 3, 0, 1));
    mx = f32x4.pmax(mx, i32x4.shuffle(mx, mx, 1, 0, 3, 2));
    let sum = f64x2.splat(0);
    for (let b: usize = 0; b < pStride; b += 16) {
      const e = expx4(f32x4.sub(v128.load(ph + b), mx));
      v128.store(ph + b, e);
      sum = f64x2.add(sum, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1))));
    }
    const l = f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
    if (part) {
      // the chunk's own max and sum; its sums unnormalised (times 1: exact)
      const ph = part + <usize>h * partBytes(headDimV);
      store<f32>(ph, f32x4.extract_lane(mx, 0));
      store<f32>(ph, <f32>l, 4);
      store<f32>(invs + (<usize>h << 2), 1);
    } else store<f32>(invs + (<usize>h << 2), <f32>(1.0 / l));
  }

  if (part) weightedSums(scores, pStride, invs, gs, v, vStride, n, headDimV, part + 8, partBytes(headDimV), invs + (<usize>gs << 2));
  else weightedSums(scores, pStride, invs, gs, v, vStride, n, headDimV, out, <usize>headDimV << 2, invs + (<usize>gs << 2));
}

/** Bytes of one head's partial over a chunk of positions: m, Σe (f32), then headDimV sums. */
// @ts-ignore: decorator
@inline function partBytes(headDimV: i32): usize { return <usize>(headDimV + 2) << 2; }

/**
 * Units [u0, u1) of one query position's attention split over chunks of its positions (a decode
 * step: few query rows, so the heads alone leave threads idle or reading the same cache). A unit is
 * (kv head kh, chunk c): all `group` query heads of kh over positions [c·chunk, min(n, (c+1)·chunk)),
 * its partials (attendGroup's part) at part + PART_HEAD + (kh·nChunks + c)·group·partBytes. The
 * unit that completes a kv head's last chunk (a counter per kv head at part + 4·kh, zeroed by the
 * host) merges its chunks in chunk order: out_h = Σ_c w_c·acc_c / Σ_c w_c·l_c, w_c = exp(m_c − M),
 * M = max_c m_c — the same bits whichever thread does it, on any number of threads.
 */
export function attentionSplit(q: usize, k: usize, v: usize, kStride: usize, vStride: usize, n: i32,
  headDim: i32, headDimV: i32, group: i32, scale: f32, out: usize, part: usize, u0: i32, u1: i32, scores: usize, chunk: i32): void {
  const nChunks = (n + chunk - 1) / chunk;
  const hb = <usize>group * partBytes(headDimV);
  for (let u = u0; u < u1; u++) {
    const kh = u / nChunks, c = u % nChunks;
    const j0 = c * chunk, nc = min(chunk, n - j0);
    const h0 = kh * group;
    const pk = part + PART_HEAD + <usize>kh * <usize>nChunks * hb;
    attendGroup(q + (<usize>(h0 * headDim) << 2), k + <usize>kh * (<usize>headDim << 2) + <usize>j0 * kStride,
      v + <usize>kh * (<usize>headDimV << 2) + <usize>j0 * vStride, kStride, vStride, nc,
      headDim, headDimV, group, scale, 0, scores, pk + <usize>c * hb);
    // the stores above happen before this atomic; the thread that sees the last count sees them all
    if (atomic.add<i32>(part + (<usize>kh << 2), 1) == nChunks - 1) mergeChunks(pk, nChunks, group, headDimV, out + (<usize>(h0 * headDimV) << 2));
  }
}
/** Bytes before the partials: the kv heads' counters (at most PART_HEAD / 4 kv heads). */
export const PART_HEAD: usize = 256;

/** attentionSplit's merge of one kv head's chunks (partials at pk) into the group's outputs at out. */
function mergeChunks(pk: usize, nChunks: i32, group: i32, headDimV: i32, out: usize): void {
  const pb = partBytes(headDimV), hb = <usize>group * pb;
  const db = <usize>headDimV << 2, d4 = <usize>(headDimV & ~3) << 2;
  for (let h = 0; h < group; h++) {
    const p0 = pk + <usize>h * pb;
    let M: f32 = -Infinity;
    for (let c = 0; c < nChunks; c++) M = max(M, load<f32>(p0 + <usize>c * hb));
    let L: f64 = 0;
    for (let c = 0; c < nChunks; c++) {
      const pc = p0 + <usize>c * hb;
      L += Math.exp(<f64>(load<f32>(pc) - M)) * <f64>load<f32>(pc, 4);
    }
    const oh = out + <usize>h * db;
    for (let c = 0; c < nChunks; c++) {
      const pc = p0 + <usize>c * hb;
      const w = <f32>(Math.exp(<f64>(load<f32>(pc) - M)) / L), wv = f32x4.splat(w);
      const a = pc + 8;
      let i: usize = 0;
      if (c == 0) {
        for (; i < d4; i += 16) v128.store(oh + i, f32x4.mul(wv, v128.load(a + i)));
        for (; i < db; i += 4) store<f32>(oh + i, w * load<f32>(a + i));
      } else {
        for (; i < d4; i += 16) v128.store(oh + i, f32x4.add(v128.load(oh + i), f32x4.mul(wv, v128.load(a + i))));
        for (; i < db; i += 4) store<f32>(oh + i, load<f32>(oh + i) + w * load<f32>(a + i));
      }
    }
  }
}

/**
 * Units [u0, u1) of one query position's attention. With a head list (heads: i32 head numbers)
 * a unit is one listed head; without (heads = 0) a unit is gs consecutive heads of one kv head
 * (gs divides group = nHeads / nKvHeads). q: nHeads × headDim f32; k / v: position `start` of the
 * cache, kStride / vStride bytes per position; n >= 1 positions; scores: attendGroup's room for
 * gs heads. The other heads' out is left as it is (the host zeroes it).
 */
export function attentionHeads(q: usize, k: usize, v: usize, kStride: usize, vStride: usize, n: i32,
  headDim: i32, headDimV: i32, group: i32, scale: f32, out: usize, heads: usize, u0: i32, u1: i32, scores: usize, gs: i32): void {
  for (let u = u0; u < u1; u++) {
    const h = heads ? load<i32>(heads + (<usize>u << 2)) : u * gs;
    const kh = <usize>(h / group);
    attendGroup(q + (<usize>(h * headDim) << 2), k + kh * (<usize>headDim << 2), v + kh * (<usize>headDimV << 2), kStride, vStride, n,
      headDim, headDimV, heads ? 1 : gs, scale, out + (<usize>(h * headDimV) << 2), scores);
  }
}

// ------------------------------------------------------------------ task lists (one per dispatch)
// The host writes a list of tasks (TASK_WORDS i32 each) and every thread calls run() with its id:
// the units of all tasks (rows of a mat-vec / mat-mul, heads of an attention) are numbered
// consecutively, so mixed lists (q, k and v together) stay balanced. Three quarters are split
// evenly, each thread a contiguous range; the threads claim the last quarter in chunks from a
// shared counter: a thread that runs slower takes fewer chunks. An equal split left the host
// waiting ~5 µs per dispatch for the worker (7% slower on the same work, and woken later), 9% of
// a SmolLM2 decode step. Each thread's range is itself taken in sub-chunks from a counter of its
// own, which the other threads take from once the rest is done: a thread the system has not
// scheduled (another process or a kernel thread holding its core, often for a millisecond) then
// leaves its range to the others instead of holding the whole dispatch up. The host waits for the
// list's units to be done, not for every thread to have looked at it, so a thread that comes late
// finds its counters tagged with another dispatch and leaves (`claim`).
// Every unit is computed whole by one thread, so results do not depend on who took it.

export const TASK_WORDS: i32 = 18;
/** quarters of the units split evenly up front; the rest is claimed */
const STATIC_SHARE: i64 = 3;
/** chunks per thread of the claimed rest: enough to even out, few enough that claiming costs nothing */
const CHUNKS_PER_THREAD: i64 = 4;
/** sub-chunks of a thread's even range */
const SUB_CHUNKS: i64 = 8;
// the claims block (i32 words at `claims`; the host sets them before each dispatch): units done,
// the list's units (the host thread's run writes it), the rest's next chunk, then thread t's next
// sub-chunk at C_OWN + t. The counters hold the dispatch's tag (its generation mod 4096) above
// TAG_SHIFT and the next index below.
export const C_DONE: i32 = 0;
export const C_TOTAL: i32 = 1;
export const C_REST: i32 = 2;
export const C_OWN: i32 = 3;
export const TAG_SHIFT: i32 = 20;
/** run()'s result bit: this thread found its own range's counter already taken to the end (it came late) */
export const LATE: i32 = 1 << 30;
export const T_QMATVEC: i32 = 1;  // type w rowBytes cols units rowIdx qa out
export const T_FMATVEC: i32 = 2;  // type w rowBytes cols units rowIdx x out xs
export const T_QMATMUL: i32 = 3;  // type w rowBytes cols units qa qaStride nTok Out outStride scratch scratchBytes(per thread)
export const T_FMATMUL: i32 = 4;  // type w rowBytes cols units X nPad Out outStride wbuf wbufBytes(per thread)
export const T_ATTN: i32 = 5;     // q k v kStride vStride n headDim headDimV group scale out heads units scores scoresBytes(per thread) - gs(heads per unit without a list)
export const T_TMATVEC: i32 = 6;  // kind plan copy panels units(tiles of 32 rows) 0 0 out   (transposed copy, kept input channels: asm/sparse.ts)
export const T_SCREEN: i32 = 7;   // gBlocks(64-blocks per group in memory) w rs nb(64-blocks read) units(groups) - xa out rows best(32 bytes per thread: score, index)   (asm/screen.ts)
export const T_SCREEN_BUILD: i32 = 8; // type w rowBytes nb(64-blocks) units(groups) rows dst search xbuf xbufBytes(per thread) layout phase(0: column maxima into colmax + tid·cols·4; 1: quantize) colmax(phase 0) / perm(phase 1: the columns' order, 0 none) c rs
export const T_TBUILD: i32 = 9;  // type w rowBytes rows units(tiles of 32 rows) cols dst layout scratch scratchBytes(per thread)   (transposed copy: asm/sparse.ts)
export const T_R4MATVEC: i32 = 10; // type w rowBytes - units(groups of 4 rows) - qa out   (interleaved rows, dense: asm/r4.ts)
export const T_SCREEN_GROUPS: i32 = 11; // w2 nb2 gidx xa units(listed groups) split rs out   (the screen's second stage: asm/screen.ts)
export const T_SCREEN_SELECT: i32 = 12; // s r t n params units(SELECT_UNIT rows) always idx counts   (the candidate scan: asm/screen.ts)
export const T_EW: i32 = 13;     // op(0 SiLU, 1 GELU, 2 multiply) a b n units(EW_UNIT elements)   (element-wise ops of a batch: asm/ops.ts)
export const T_ATTN_SPLIT: i32 = 14; // q k v kStride vStride n headDim headDimV group scale out part units(kv heads × chunks) scores scoresBytes(per thread) - chunk(positions)   (attentionSplit)
/** elements per unit of T_EW */
const EW_UNIT: i32 = 4096;
// T_QMATVEC word 9, T_QMATMUL word 13 (its units then groups of 4 rows), T_TBUILD word 8: the
// weights' layout (0 ggml rows, 1 four rows interleaved)
const L_R4: i32 = 1;

// @ts-ignore: decorator
@inline function word(t: usize, i: i32): i32 { return load<i32>(t + (<usize>i << 2)); }

/** The units of a task (at word 5 for the linears, word 13 for attention). */
// @ts-ignore: decorator
@inline function units(t: usize): i32 { return isAttn(word(t, 0)) ? word(t, 13) : word(t, 5); }
// @ts-ignore: decorator
@inline function isAttn(kind: i32): bool { return kind == T_ATTN || kind == T_ATTN_SPLIT; }

/**
 * Thread tid's part of a task list (see above); nth = 1: all of it (claims unused). Returns the
 * units this thread computed, with LATE set when its own range had been taken by the others.
 */
export function run(table: usize, nTasks: i32, tid: i32, nth: i32, claims: usize, gen: i32): i32 {
  let total: i64 = 0;
  for (let i = 0; i < nTasks; i++) total += units(table + (<usize>(i * TASK_WORDS) << 2));
  if (nth == 1) {
    runRange(table, nTasks, 0, <i32>total, tid);
    return <i32>total;
  }
  if (tid == 0) atomic.store<i32>(claims + (<usize>C_TOTAL << 2), <i32>total);
  const tag = gen & ((1 << (32 - TAG_SHIFT)) - 1);
  // the first STATIC_SHARE of the units in equal contiguous ranges (one forward stream per thread),
  // the rest claimed in small chunks by whoever is free. Attention units differ in cost (a prefill
  // batch's rows attend to more and more positions; the host lists them longest first): all of
  // them are claimed one at a time.
  const attn = isAttn(word(table, 0));
  const fixed = attn ? 0 : total * STATIC_SHARE / 4;
  let done = 0;
  let late = false;
  if (fixed > 0) {
    const d = runOwn(table, nTasks, tid, tid, nth, fixed, claims, tag);
    late = d < 0;
    if (d > 0) done += d;
  }
  // (chunks are counted below the tag: at most 2^TAG_SHIFT − 1 of them, so that a closed counter stays closed)
  const maxChunks: i64 = (1 << TAG_SHIFT) - 1;
  const chunk = attn ? max<i64>(1, (total + maxChunks - 1) / maxChunks) : max<i64>(1, (total - fixed) / (CHUNKS_PER_THREAD * <i64>nth));
  const nRest = <i32>((total - fixed + chunk - 1) / chunk);
  for (;;) {
    const j = claim(claims + (<usize>C_REST << 2), tag, nRest);
    if (j < 0) break;
    const a = fixed + <i64>j * chunk, b = min<i64>(total, a + chunk);
    runRange(table, nTasks, <i32>a, <i32>b, tid);
    atomic.add<i32>(claims + (<usize>C_DONE << 2), <i32>(b - a));
    done += <i32>(b - a);
  }
  // then what the others have not started of their ranges
  if (fixed > 0) {
    for (let t = 1; t < nth; t++) {
      const d = runOwn(table, nTasks, (tid + t) % nth, tid, nth, fixed, claims, tag);
      if (d > 0) done += d;
    }
  }
  return done | (late ? LATE : 0);
}

/**
 * Sub-chunks of thread t's even range taken by thread tid until none is left: the units computed,
 * or −1 when the counter was already at its end (or another dispatch's) at the first look.
 */
function runOwn(table: usize, nTasks: i32, t: i32, tid: i32, nth: i32, fixed: i64, claims: usize, tag: i32): i32 {
  const lo = fixed * t / nth, len = fixed * (t + 1) / nth - lo;
  const subs = <i32>min<i64>(SUB_CHUNKS, len);
  if (subs == 0) return 0;
  let done = 0, first = true;
  for (;;) {
    const j = claim(claims + (<usize>(C_OWN + t) << 2), tag, subs);
    if (j < 0) return first ? -1 : done;
    first = false;
    const a = lo + len * j / subs, b = lo + len * (j + 1) / subs;
    runRange(table, nTasks, <i32>a, <i32>b, tid);
    atomic.add<i32>(claims + (<usize>C_DONE << 2), <i32>(b - a));
    done += <i32>(b - a);
  }
  return done; // (not reached)
}

/** The next index below `limit` of the counter at p, or −1: none left, or the counter is tagged with another dispatch than `tag`. */
function claim(p: usize, tag: i32, limit: i32): i32 {
  for (;;) {
    const v = atomic.load<i32>(p);
    if ((<u32>v >>> TAG_SHIFT) != <u32>tag) return -1;
    const i = v & ((1 << TAG_SHIFT) - 1);
    if (i >= limit) return -1;
    if (atomic.cmpxchg<i32>(p, v, v + 1) == v) return i;
  }
  return -1; // (not reached)
}

/** The units [lo, hi) of the task list (numbered across its tasks), by thread tid. */
function runRange(table: usize, nTasks: i32, lo: i32, hi: i32, tid: i32): void {
  let base = 0;
  for (let i = 0; i < nTasks && base < hi; i++) {
    const t = table + (<usize>(i * TASK_WORDS) << 2);
    const u = units(t);
    const a = max(lo, base) - base, b = min(hi, base + u) - base;
    base += u;
    if (a >= b) continue;
    switch (word(t, 0)) {
      case T_QMATVEC:
        if (word(t, 9) == L_R4) r4gather(word(t, 1), word(t, 2), word(t, 3), word(t, 6), a, b, word(t, 7), word(t, 8));
        else qmatvec(word(t, 1), word(t, 2), word(t, 3), word(t, 4), word(t, 6), a, b, word(t, 7), word(t, 8));
        break;
      case T_R4MATVEC:
        r4matvec(word(t, 1), word(t, 2), word(t, 3), a, b, word(t, 7), word(t, 8));
        break;
      case T_FMATVEC:
        fmatvec(word(t, 1), word(t, 2), word(t, 3), word(t, 4), word(t, 6), a, b, word(t, 7), word(t, 9), word(t, 8));
        break;
      case T_QMATMUL: {
        const sc = <usize>word(t, 11) + <usize>tid * <usize>word(t, 12);
        if (word(t, 13) == L_R4) {
          // interleaved weights: units are groups of four rows
          r4matmul(word(t, 1), word(t, 2), word(t, 3), a, b, word(t, 6), word(t, 7), word(t, 8), word(t, 9), word(t, 10), sc);
        } else {
          qmatmul(word(t, 1), word(t, 2), word(t, 3), word(t, 4), a, b, word(t, 6), word(t, 7), word(t, 8), word(t, 9), word(t, 10), sc);
        }
        break;
      }
      case T_FMATMUL:
        fmatmul(word(t, 1), word(t, 2), word(t, 3), word(t, 4), a, b, word(t, 6), word(t, 7), word(t, 8), word(t, 9),
          <usize>word(t, 10) + <usize>tid * <usize>word(t, 11));
        break;
      case T_TMATVEC:
        tmatvec(word(t, 1), word(t, 2), word(t, 3), word(t, 4), a, b, word(t, 8));
        break;
      case T_ATTN:
        attentionHeads(word(t, 1), word(t, 2), word(t, 3), word(t, 4), word(t, 5), word(t, 6), word(t, 7), word(t, 8),
          word(t, 9), reinterpret<f32>(word(t, 10)), word(t, 11), word(t, 12), a, b,
          <usize>word(t, 14) + <usize>tid * <usize>word(t, 15), word(t, 17));
        break;
      case T_ATTN_SPLIT:
        attentionSplit(word(t, 1), word(t, 2), word(t, 3), word(t, 4), word(t, 5), word(t, 6), word(t, 7), word(t, 8),
          word(t, 9), reinterpret<f32>(word(t, 10)), word(t, 11), word(t, 12), a, b,
          <usize>word(t, 14) + <usize>tid * <usize>word(t, 15), word(t, 17));
        break;
      case T_SCREEN:
        screenMatvec(word(t, 2), word(t, 4), word(t, 1), a, b, word(t, 7), word(t, 3), word(t, 8), word(t, 9), <usize>word(t, 10) + (<usize>tid << 5));
        break;
      case T_SCREEN_GROUPS:
        screenGroups(word(t, 1), word(t, 2), <usize>word(t, 3) + (<usize>a << 2), b - a, word(t, 4), word(t, 6), word(t, 7), word(t, 8));
        break;
      case T_SCREEN_SELECT:
        screenSelectUnits(word(t, 1), word(t, 2), word(t, 3), word(t, 4), word(t, 6), word(t, 7), word(t, 8), word(t, 9), a, b);
        break;
      case T_EW: {
        const i0 = a * EW_UNIT, i1 = min(word(t, 4), b * EW_UNIT), op = word(t, 1);
        const off = <usize>i0 << 2;
        if (op == 2) combine(<usize>word(t, 2) + off, <usize>word(t, 3) + off, i1 - i0, 0);
        else activate(<usize>word(t, 2) + off, i1 - i0, op);
        break;
      }
      case T_SCREEN_BUILD: {
        // dequantize four rows (padding rows are zero); phase 0 takes their column maxima,
        // phase 1 quantizes them as one screen group
        const x = <usize>word(t, 9) + <usize>tid * <usize>word(t, 10);
        const nb = word(t, 4), cols = nb << 6, rows = word(t, 6);
        const rb = <usize>word(t, 3), r4 = word(t, 11) == L_R4, phase = word(t, 12);
        // a row of scratch for the columns' reordering after the four f32 rows, then for interleaved
        // weights (rows a multiple of 4) the group's rows back in ggml rows
        const tmp = x + (<usize>(4 * cols) << 2), gbuf = tmp + (<usize>cols << 2);
        for (let g = a; g < b; g++) {
          if (r4) r4rows(word(t, 1), word(t, 2), rb, 4 * g, 4 * g + 4, gbuf);
          for (let r = 0; r < 4; r++) {
            const row = 4 * g + r, xr = x + (<usize>(r * cols) << 2);
            if (row < rows) dequantize(word(t, 1), r4 ? gbuf + <usize>r * rb : <usize>word(t, 2) + <usize>row * rb, cols, xr);
            else memory.fill(xr, 0, <usize>cols << 2);
          }
          if (phase == 0) screenColMax(x, cols, <usize>word(t, 13) + <usize>tid * (<usize>cols << 2));
          else {
            if (word(t, 13)) screenPermute4(x, cols, word(t, 13), tmp);
            screenQuantizeGroup(x, nb, word(t, 14), <usize>word(t, 7) + <usize>g * <usize>nb * SCREEN_BLOCK_BYTES, <usize>word(t, 15) + (<usize>g << 4), word(t, 8) != 0);
          }
        }
        break;
      }
      case T_TBUILD: {
        // whole tiles per thread: the rows of a tile share their code bytes
        const rows = word(t, 4);
        if (word(t, 8) == L_R4) {
          // interleaved weights: each tile's 32 rows back in ggml rows first
          const rb = <usize>word(t, 3), buf = <usize>word(t, 9) + <usize>tid * <usize>word(t, 10);
          for (let tile = a; tile < b; tile++) {
            const r0 = tile << 5, r1 = min(r0 + 32, rows);
            r4rows(word(t, 1), word(t, 2), rb, r0, r1, buf);
            tbuild(word(t, 1), buf - <usize>r0 * rb, rb, word(t, 6), r0, r1, word(t, 7));
          }
        } else {
          tbuild(word(t, 1), word(t, 2), word(t, 3), word(t, 6), a << 5, min(b << 5, rows), word(t, 7));
        }
        break;
      }
      default: unreachable();
    }
  }
}
