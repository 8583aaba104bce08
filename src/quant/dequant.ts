// Reference dequantizers and dot-product kernels for every ggml type in types.ts.
//
// Written from the ggml block-format definitions. Every block stores its scales as f16,
// read as two bytes and looked up in the F16 table (no DataView on the hot paths).
// All products here are exact in f32 (an f16 scale times a small integer, times a small
// integer), so computing them in JS doubles and storing into a Float32Array gives the same
// bits as ggml / gguf-py computing in f32; where a value is `scale*q - min` the subtraction
// is one double operation on two f32 values, and rounding that to f32 equals the f32
// operation (double rounding is harmless for p' >= 2p + 2). So dequantize is bit-exact.
//
// dotRow works block by block: the integer codes are multiplied with x and summed in a
// double, and the block's scale is applied once per (sub-)block; the row total is a double.
//
// Block layouts (little-endian; "f16" = IEEE half), QK = elements per block:
//   Q4_0  (32) d:f16 qs[16]            x = d*(q-8);  q = nibble, lo nibbles -> 0..15, hi -> 16..31
//   Q4_1  (32) d:f16 m:f16 qs[16]      x = d*q + m
//   Q5_0  (32) d:f16 qh:u32 qs[16]     x = d*(q-16); q = nibble | bit j of qh << 4
//   Q5_1  (32) d:f16 m:f16 qh qs[16]   x = d*q + m
//   Q8_0  (32) d:f16 qs:i8[32]         x = d*q
//   Q2_K (256) sc[16] qs[64] d dmin    16 groups of 16; x = d*(sc&15)*q - dmin*(sc>>4), q 2 bits
//   Q3_K (256) hm[32] qs[64] sc[12] d  16 groups of 16, 6-bit signed scales; q = 2 bits - (hbit ? 0 : 4)
//   Q4_K (256) d dmin sc[12] qs[128]   8 groups of 32, 6-bit scale and min; x = d*sc*q - dmin*m
//   Q5_K (256) d dmin sc[12] qh[32] qs[128]   as Q4_K with a 5th bit from qh
//   Q6_K (256) ql[128] qh[64] sc:i8[16] d     16 groups of 16; q = 4 + 2 bits - 32; x = d*sc*q
// In the 256-element types, element e = h*128 + s*32 + l of a 2-bit plane comes from byte
// h*32 + l, bits 2s..2s+1; 4-bit planes: element c*64 + k*32 + l from byte c*32 + l, nibble k.

import { F16_BITS, F16_TABLE, BF16_TABLE } from './fp16.js';
import { GGMLType, allQuantTypes, quantInfo, typeName, type QuantInfo } from './types.js';

type DequantFn = (src: Uint8Array, so: number, dst: Float32Array, doff: number, nBlocks: number) => void;
type DotFn = (src: Uint8Array, so: number, x: Float32Array, xo: number, nBlocks: number) => number;

interface Kernel {
  readonly dequant: DequantFn;
  readonly dot: DotFn;
}

const F16 = F16_TABLE;

// ---------------------------------------------------------------- float types

const f32Dequant: DequantFn = (src, so, dst, doff, n) => {
  // bit-exact byte copy (little-endian host, as every platform Node ships on)
  new Uint8Array(dst.buffer, dst.byteOffset + doff * 4, n * 4).set(src.subarray(so, so + n * 4));
};

// f32 dot: a Float32Array view of the source buffer, cached per buffer, when aligned.
let viewBuf: ArrayBufferLike | null = null;
let viewF32: Float32Array<ArrayBufferLike> = new Float32Array(0);
const scratchU32 = new Uint32Array(1);
const scratchF32 = new Float32Array(scratchU32.buffer);

const f32Dot: DotFn = (src, so, x, xo, n) => {
  let sum = 0;
  const byteStart = src.byteOffset + so;
  if ((byteStart & 3) === 0) {
    if (viewBuf !== src.buffer) {
      viewBuf = src.buffer;
      viewF32 = new Float32Array(src.buffer, 0, src.buffer.byteLength >>> 2);
    }
    const w = viewF32;
    const wo = byteStart >>> 2;
    for (let i = 0; i < n; i++) sum += w[wo + i]! * x[xo + i]!;
    return sum;
  }
  for (let i = 0, o = so; i < n; i++, o += 4) {
    scratchU32[0] = src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24);
    sum += scratchF32[0]! * x[xo + i]!;
  }
  return sum;
};

const f16Dequant: DequantFn = (src, so, dst, doff, n) => {
  // through the bit table so that NaN payloads survive exactly
  const out = new Uint32Array(dst.buffer, dst.byteOffset + doff * 4, n);
  for (let i = 0, o = so; i < n; i++, o += 2) out[i] = F16_BITS[src[o]! | (src[o + 1]! << 8)]!;
};

const f16Dot: DotFn = (src, so, x, xo, n) => {
  let sum = 0;
  for (let i = 0, o = so; i < n; i++, o += 2) sum += F16[src[o]! | (src[o + 1]! << 8)]! * x[xo + i]!;
  return sum;
};

const bf16Dequant: DequantFn = (src, so, dst, doff, n) => {
  const out = new Uint32Array(dst.buffer, dst.byteOffset + doff * 4, n);
  for (let i = 0, o = so; i < n; i++, o += 2) out[i] = ((src[o]! << 16) | (src[o + 1]! << 24)) >>> 0;
};

const bf16Dot: DotFn = (src, so, x, xo, n) => {
  let sum = 0;
  for (let i = 0, o = so; i < n; i++, o += 2) sum += BF16_TABLE[src[o]! | (src[o + 1]! << 8)]! * x[xo + i]!;
  return sum;
};

// ---------------------------------------------------------------- 32-element blocks

const q4_0Dequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 18, di += 32) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j]!;
      dst[di + j] = d * ((q & 15) - 8);
      dst[di + j + 16] = d * ((q >>> 4) - 8);
    }
  }
};

const q4_0Dot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xi = xo; b < nb; b++, o += 18, xi += 32) {
    let s = 0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 2 + j]!;
      s += ((q & 15) - 8) * x[xi + j]! + ((q >>> 4) - 8) * x[xi + j + 16]!;
    }
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * s;
  }
  return sum;
};

const q4_1Dequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 20, di += 32) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    const m = F16[src[o + 2]! | (src[o + 3]! << 8)]!;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j]!;
      dst[di + j] = d * (q & 15) + m;
      dst[di + j + 16] = d * (q >>> 4) + m;
    }
  }
};

const q4_1Dot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xi = xo; b < nb; b++, o += 20, xi += 32) {
    let s = 0;
    let sx = 0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 4 + j]!;
      const x0 = x[xi + j]!;
      const x1 = x[xi + j + 16]!;
      s += (q & 15) * x0 + (q >>> 4) * x1;
      sx += x0 + x1;
    }
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * s + F16[src[o + 2]! | (src[o + 3]! << 8)]! * sx;
  }
  return sum;
};

const q5_0Dequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 22, di += 32) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    const qh = src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j]!;
      dst[di + j] = d * (((q & 15) | (((qh >>> j) & 1) << 4)) - 16);
      dst[di + j + 16] = d * (((q >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
    }
  }
};

const q5_0Dot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xi = xo; b < nb; b++, o += 22, xi += 32) {
    const qh = src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24);
    let s = 0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 6 + j]!;
      s += (((q & 15) | (((qh >>> j) & 1) << 4)) - 16) * x[xi + j]!
        + (((q >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * x[xi + j + 16]!;
    }
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * s;
  }
  return sum;
};

const q5_1Dequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 24, di += 32) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    const m = F16[src[o + 2]! | (src[o + 3]! << 8)]!;
    const qh = src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24);
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j]!;
      dst[di + j] = d * ((q & 15) | (((qh >>> j) & 1) << 4)) + m;
      dst[di + j + 16] = d * ((q >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) + m;
    }
  }
};

const q5_1Dot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xi = xo; b < nb; b++, o += 24, xi += 32) {
    const qh = src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24);
    let s = 0;
    let sx = 0;
    for (let j = 0; j < 16; j++) {
      const q = src[o + 8 + j]!;
      const x0 = x[xi + j]!;
      const x1 = x[xi + j + 16]!;
      s += ((q & 15) | (((qh >>> j) & 1) << 4)) * x0 + ((q >>> 4) | (((qh >>> (j + 16)) & 1) << 4)) * x1;
      sx += x0 + x1;
    }
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * s + F16[src[o + 2]! | (src[o + 3]! << 8)]! * sx;
  }
  return sum;
};

const q8_0Dequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 34, di += 32) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    for (let j = 0; j < 32; j++) dst[di + j] = d * ((src[o + 2 + j]! << 24) >> 24);
  }
};

const q8_0Dot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xi = xo; b < nb; b++, o += 34, xi += 32) {
    let s = 0;
    for (let j = 0; j < 32; j++) s += ((src[o + 2 + j]! << 24) >> 24) * x[xi + j]!;
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * s;
  }
  return sum;
};

// ---------------------------------------------------------------- 256-element super-blocks

const q2_KDequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 84, di += 256) {
    const d = F16[src[o + 80]! | (src[o + 81]! << 8)]!;
    const dmin = F16[src[o + 82]! | (src[o + 83]! << 8)]!;
    for (let h = 0; h < 2; h++) {
      const qo = o + 16 + h * 32;
      for (let s = 0; s < 4; s++) {
        const shift = 2 * s;
        for (let half = 0; half < 2; half++) {
          const sc = src[o + h * 8 + s * 2 + half]!;
          const dl = d * (sc & 15);
          const ml = dmin * (sc >>> 4);
          const e0 = di + h * 128 + s * 32 + half * 16;
          for (let l = half * 16, e = e0; l < half * 16 + 16; l++, e++) dst[e] = dl * ((src[qo + l]! >>> shift) & 3) - ml;
        }
      }
    }
  }
};

const q2_KDot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xb = xo; b < nb; b++, o += 84, xb += 256) {
    let sq = 0; // sum of (d-scale * q . x)
    let sm = 0; // sum of (min-scale * sum x)
    for (let h = 0; h < 2; h++) {
      const qo = o + 16 + h * 32;
      for (let s = 0; s < 4; s++) {
        const shift = 2 * s;
        for (let half = 0; half < 2; half++) {
          const sc = src[o + h * 8 + s * 2 + half]!;
          const xi = xb + h * 128 + s * 32;
          let acc = 0;
          let ax = 0;
          for (let l = half * 16; l < half * 16 + 16; l++) {
            const xv = x[xi + l]!;
            acc += ((src[qo + l]! >>> shift) & 3) * xv;
            ax += xv;
          }
          sq += (sc & 15) * acc;
          sm += (sc >>> 4) * ax;
        }
      }
    }
    sum += F16[src[o + 80]! | (src[o + 81]! << 8)]! * sq - F16[src[o + 82]! | (src[o + 83]! << 8)]! * sm;
  }
  return sum;
};

/** The 16 signed 6-bit Q3_K scales of the block at o, into out[0..16). */
function q3_KScales(src: Uint8Array, o: number, out: Int32Array): void {
  const s = o + 96;
  for (let i = 0; i < 16; i++) {
    const lo = i < 8 ? src[s + i]! & 15 : src[s + i - 8]! >>> 4;
    const hi = (src[s + 8 + (i & 3)]! >>> (2 * (i >>> 2))) & 3;
    out[i] = (lo | (hi << 4)) - 32;
  }
}

const q3Scales = new Int32Array(16);

const q3_KDequant: DequantFn = (src, so, dst, doff, nb) => {
  const scales = q3Scales;
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 110, di += 256) {
    const d = F16[src[o + 108]! | (src[o + 109]! << 8)]!;
    q3_KScales(src, o, scales);
    for (let h = 0; h < 2; h++) {
      const qo = o + 32 + h * 32;
      for (let s = 0; s < 4; s++) {
        const shift = 2 * s;
        const hbit = h * 4 + s;
        for (let half = 0; half < 2; half++) {
          const dl = d * scales[h * 8 + s * 2 + half]!;
          const e0 = di + h * 128 + s * 32;
          for (let l = half * 16; l < half * 16 + 16; l++) {
            const q = ((src[qo + l]! >>> shift) & 3) - (((src[o + l]! >>> hbit) & 1) ^ 1) * 4;
            dst[e0 + l] = dl * q;
          }
        }
      }
    }
  }
};

const q3_KDot: DotFn = (src, so, x, xo, nb) => {
  const scales = q3Scales;
  let sum = 0;
  for (let b = 0, o = so, xb = xo; b < nb; b++, o += 110, xb += 256) {
    q3_KScales(src, o, scales);
    let sb = 0;
    for (let h = 0; h < 2; h++) {
      const qo = o + 32 + h * 32;
      for (let s = 0; s < 4; s++) {
        const shift = 2 * s;
        const hbit = h * 4 + s;
        const xi = xb + h * 128 + s * 32;
        for (let half = 0; half < 2; half++) {
          let acc = 0;
          for (let l = half * 16; l < half * 16 + 16; l++) {
            const q = ((src[qo + l]! >>> shift) & 3) - (((src[o + l]! >>> hbit) & 1) ^ 1) * 4;
            acc += q * x[xi + l]!;
          }
          sb += scales[h * 8 + s * 2 + half]! * acc;
        }
      }
    }
    sum += F16[src[o + 108]! | (src[o + 109]! << 8)]! * sb;
  }
  return sum;
};

// Q4_K / Q5_K: 8 scales and 8 mins, 6 bits each, packed in 12 bytes at o+4.
const kSc = new Int32Array(8);
const kMn = new Int32Array(8);
function kScalesMins(src: Uint8Array, o: number): void {
  const p = o + 4;
  for (let j = 0; j < 4; j++) {
    kSc[j] = src[p + j]! & 63;
    kMn[j] = src[p + 4 + j]! & 63;
    kSc[j + 4] = (src[p + 8 + j]! & 15) | ((src[p + j]! >>> 6) << 4);
    kMn[j + 4] = (src[p + 8 + j]! >>> 4) | ((src[p + 4 + j]! >>> 6) << 4);
  }
}

const q4_KDequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 144, di += 256) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    const dmin = F16[src[o + 2]! | (src[o + 3]! << 8)]!;
    kScalesMins(src, o);
    for (let c = 0; c < 4; c++) {
      const qo = o + 16 + c * 32;
      const d1 = d * kSc[2 * c]!, m1 = dmin * kMn[2 * c]!;
      const d2 = d * kSc[2 * c + 1]!, m2 = dmin * kMn[2 * c + 1]!;
      const e = di + c * 64;
      for (let l = 0; l < 32; l++) {
        const q = src[qo + l]!;
        dst[e + l] = d1 * (q & 15) - m1;
        dst[e + 32 + l] = d2 * (q >>> 4) - m2;
      }
    }
  }
};

const q4_KDot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xb = xo; b < nb; b++, o += 144, xb += 256) {
    kScalesMins(src, o);
    let sq = 0;
    let sm = 0;
    for (let c = 0; c < 4; c++) {
      const qo = o + 16 + c * 32;
      const xi = xb + c * 64;
      let a1 = 0, a2 = 0, x1 = 0, x2 = 0;
      for (let l = 0; l < 32; l++) {
        const q = src[qo + l]!;
        const xa = x[xi + l]!;
        const xb2 = x[xi + 32 + l]!;
        a1 += (q & 15) * xa;
        a2 += (q >>> 4) * xb2;
        x1 += xa;
        x2 += xb2;
      }
      sq += kSc[2 * c]! * a1 + kSc[2 * c + 1]! * a2;
      sm += kMn[2 * c]! * x1 + kMn[2 * c + 1]! * x2;
    }
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * sq - F16[src[o + 2]! | (src[o + 3]! << 8)]! * sm;
  }
  return sum;
};

const q5_KDequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 176, di += 256) {
    const d = F16[src[o]! | (src[o + 1]! << 8)]!;
    const dmin = F16[src[o + 2]! | (src[o + 3]! << 8)]!;
    kScalesMins(src, o);
    const ho = o + 16;
    for (let c = 0; c < 4; c++) {
      const qo = o + 48 + c * 32;
      const d1 = d * kSc[2 * c]!, m1 = dmin * kMn[2 * c]!;
      const d2 = d * kSc[2 * c + 1]!, m2 = dmin * kMn[2 * c + 1]!;
      const b1 = 2 * c, b2 = 2 * c + 1;
      const e = di + c * 64;
      for (let l = 0; l < 32; l++) {
        const q = src[qo + l]!;
        const qh = src[ho + l]!;
        dst[e + l] = d1 * ((q & 15) | (((qh >>> b1) & 1) << 4)) - m1;
        dst[e + 32 + l] = d2 * ((q >>> 4) | (((qh >>> b2) & 1) << 4)) - m2;
      }
    }
  }
};

const q5_KDot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xb = xo; b < nb; b++, o += 176, xb += 256) {
    kScalesMins(src, o);
    const ho = o + 16;
    let sq = 0;
    let sm = 0;
    for (let c = 0; c < 4; c++) {
      const qo = o + 48 + c * 32;
      const xi = xb + c * 64;
      const b1 = 2 * c, b2 = 2 * c + 1;
      let a1 = 0, a2 = 0, x1 = 0, x2 = 0;
      for (let l = 0; l < 32; l++) {
        const q = src[qo + l]!;
        const qh = src[ho + l]!;
        const xa = x[xi + l]!;
        const xb2 = x[xi + 32 + l]!;
        a1 += ((q & 15) | (((qh >>> b1) & 1) << 4)) * xa;
        a2 += ((q >>> 4) | (((qh >>> b2) & 1) << 4)) * xb2;
        x1 += xa;
        x2 += xb2;
      }
      sq += kSc[2 * c]! * a1 + kSc[2 * c + 1]! * a2;
      sm += kMn[2 * c]! * x1 + kMn[2 * c + 1]! * x2;
    }
    sum += F16[src[o]! | (src[o + 1]! << 8)]! * sq - F16[src[o + 2]! | (src[o + 3]! << 8)]! * sm;
  }
  return sum;
};

const i8 = (v: number): number => (v << 24) >> 24;

const q6_KDequant: DequantFn = (src, so, dst, doff, nb) => {
  for (let b = 0, o = so, di = doff; b < nb; b++, o += 210, di += 256) {
    const d = F16[src[o + 208]! | (src[o + 209]! << 8)]!;
    for (let h = 0; h < 2; h++) {
      const lo = o + h * 64;
      const hi = o + 128 + h * 32;
      const sc = o + 192 + h * 8;
      const e = di + h * 128;
      for (let half = 0; half < 2; half++) {
        const d1 = d * i8(src[sc + half]!);
        const d2 = d * i8(src[sc + 2 + half]!);
        const d3 = d * i8(src[sc + 4 + half]!);
        const d4 = d * i8(src[sc + 6 + half]!);
        for (let l = half * 16; l < half * 16 + 16; l++) {
          const a = src[lo + l]!;
          const c = src[lo + 32 + l]!;
          const qh = src[hi + l]!;
          dst[e + l] = d1 * (((a & 15) | ((qh & 3) << 4)) - 32);
          dst[e + 32 + l] = d2 * (((c & 15) | (((qh >>> 2) & 3) << 4)) - 32);
          dst[e + 64 + l] = d3 * (((a >>> 4) | (((qh >>> 4) & 3) << 4)) - 32);
          dst[e + 96 + l] = d4 * (((c >>> 4) | ((qh >>> 6) << 4)) - 32);
        }
      }
    }
  }
};

const q6_KDot: DotFn = (src, so, x, xo, nb) => {
  let sum = 0;
  for (let b = 0, o = so, xb = xo; b < nb; b++, o += 210, xb += 256) {
    let sb = 0;
    for (let h = 0; h < 2; h++) {
      const lo = o + h * 64;
      const hi = o + 128 + h * 32;
      const sc = o + 192 + h * 8;
      const xi = xb + h * 128;
      for (let half = 0; half < 2; half++) {
        let a1 = 0, a2 = 0, a3 = 0, a4 = 0;
        for (let l = half * 16; l < half * 16 + 16; l++) {
          const a = src[lo + l]!;
          const c = src[lo + 32 + l]!;
          const qh = src[hi + l]!;
          a1 += (((a & 15) | ((qh & 3) << 4)) - 32) * x[xi + l]!;
          a2 += (((c & 15) | (((qh >>> 2) & 3) << 4)) - 32) * x[xi + 32 + l]!;
          a3 += (((a >>> 4) | (((qh >>> 4) & 3) << 4)) - 32) * x[xi + 64 + l]!;
          a4 += (((c >>> 4) | ((qh >>> 6) << 4)) - 32) * x[xi + 96 + l]!;
        }
        sb += i8(src[sc + half]!) * a1 + i8(src[sc + 2 + half]!) * a2
          + i8(src[sc + 4 + half]!) * a3 + i8(src[sc + 6 + half]!) * a4;
      }
    }
    sum += F16[src[o + 208]! | (src[o + 209]! << 8)]! * sb;
  }
  return sum;
};

// ---------------------------------------------------------------- dispatch

/** One row per type (the compiler checks every GGMLType has one). */
const KERNELS: Record<GGMLType, Kernel> = {
  [GGMLType.F32]: { dequant: f32Dequant, dot: f32Dot },
  [GGMLType.F16]: { dequant: f16Dequant, dot: f16Dot },
  [GGMLType.BF16]: { dequant: bf16Dequant, dot: bf16Dot },
  [GGMLType.Q4_0]: { dequant: q4_0Dequant, dot: q4_0Dot },
  [GGMLType.Q4_1]: { dequant: q4_1Dequant, dot: q4_1Dot },
  [GGMLType.Q5_0]: { dequant: q5_0Dequant, dot: q5_0Dot },
  [GGMLType.Q5_1]: { dequant: q5_1Dequant, dot: q5_1Dot },
  [GGMLType.Q8_0]: { dequant: q8_0Dequant, dot: q8_0Dot },
  [GGMLType.Q2_K]: { dequant: q2_KDequant, dot: q2_KDot },
  [GGMLType.Q3_K]: { dequant: q3_KDequant, dot: q3_KDot },
  [GGMLType.Q4_K]: { dequant: q4_KDequant, dot: q4_KDot },
  [GGMLType.Q5_K]: { dequant: q5_KDequant, dot: q5_KDot },
  [GGMLType.Q6_K]: { dequant: q6_KDequant, dot: q6_KDot },
};

interface Entry {
  readonly info: QuantInfo;
  readonly dequant: DequantFn;
  readonly dot: DotFn;
}

/** Dense lookup by type id, with block geometry from types.ts. */
const table: (Entry | undefined)[] = [];
for (const info of allQuantTypes()) {
  const k = KERNELS[info.id];
  if (k) table[info.id] = { info, dequant: k.dequant, dot: k.dot };
}

/** Whether `dequantize` / `dotRow` handle this type id. */
export function hasDequantizer(type: number): boolean {
  return table[type] !== undefined;
}

function entry(type: number, n: number, what: string): Entry {
  const e = table[type];
  if (e === undefined) {
    throw new RangeError(`${what}: no dequantizer for ggml type ${typeName(type)} (id ${type})${quantInfo(type) ? '' : ' (unknown type)'}`);
  }
  if (!(n >= 0) || n % e.info.blockSize !== 0) {
    throw new RangeError(`${what}: ${n} elements is not a whole number of ${e.info.name} blocks (${e.info.blockSize} elements each)`);
  }
  return e;
}

/** Dequantize n elements (n a multiple of the type's block size) starting at byte `srcOffset` of `src` into dst[dstOffset..dstOffset+n). */
export function dequantize(type: GGMLType, src: Uint8Array, srcOffset: number, dst: Float32Array, dstOffset: number, n: number): void {
  const e = entry(type, n, 'dequantize');
  const nb = n / e.info.blockSize;
  const bytes = nb * e.info.blockBytes;
  if (srcOffset < 0 || srcOffset + bytes > src.length) {
    throw new RangeError(`dequantize: ${n} ${e.info.name} elements need bytes ${srcOffset}..${srcOffset + bytes} but the source holds ${src.length}`);
  }
  if (dstOffset < 0 || dstOffset + n > dst.length) {
    throw new RangeError(`dequantize: destination range ${dstOffset}..${dstOffset + n} is outside its ${dst.length} elements`);
  }
  e.dequant(src, srcOffset, dst, dstOffset, nb);
}

/** Dot product of n quantized elements at src[srcOffset..] with x[xOffset..xOffset+n), in f32/f64 math, without materialising the row. */
export function dotRow(type: GGMLType, src: Uint8Array, srcOffset: number, x: Float32Array, xOffset: number, n: number): number {
  const e = entry(type, n, 'dotRow');
  const nb = n / e.info.blockSize;
  const bytes = nb * e.info.blockBytes;
  if (srcOffset < 0 || srcOffset + bytes > src.length) {
    throw new RangeError(`dotRow: ${n} ${e.info.name} elements need bytes ${srcOffset}..${srcOffset + bytes} but the source holds ${src.length}`);
  }
  if (xOffset < 0 || xOffset + n > x.length) {
    throw new RangeError(`dotRow: x range ${xOffset}..${xOffset + n} is outside its ${x.length} elements`);
  }
  return e.dot(src, srcOffset, x, xOffset, nb);
}
