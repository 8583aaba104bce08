// IEEE half (f16) and bfloat16 conversions.
//
// f16 -> f32 is a lookup in a 65536-entry table built once at load; the table is also
// exposed as raw f32 bit patterns so dequantizers can copy values bit-exactly (NaN payloads
// included, which a round trip through a JS number does not guarantee).
// f32 -> f16 / bf16 round to nearest, ties to even.

/** F16_BITS[h] = the f32 bit pattern of half h (exact, incl. subnormals, ±inf, NaN payloads). */
export const F16_BITS = new Uint32Array(65536);
/** F16_TABLE[h] = half h as an f32 (a view of F16_BITS). */
export const F16_TABLE = new Float32Array(F16_BITS.buffer);
/** BF16_TABLE[h] = bfloat16 h as an f32. */
export const BF16_TABLE = new Float32Array(65536);

function halfBitsToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN, payload kept
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // normal: rebias 15 -> 127
  if (mant === 0) return sign >>> 0; // ±0
  // subnormal: value = mant * 2^-24; normalise so the leading 1 sits at bit 10
  let e = 113; // biased f32 exponent of 2^-14
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

{
  const bf16Bits = new Uint32Array(BF16_TABLE.buffer);
  for (let h = 0; h < 65536; h++) {
    F16_BITS[h] = halfBitsToFloatBits(h);
    bf16Bits[h] = h << 16;
  }
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Half-precision bits (0..65535) to its value; exact. */
export function f16ToF32(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

/** bfloat16 bits (0..65535) to its value; exact. */
export function bf16ToF32(h: number): number {
  return BF16_TABLE[h & 0xffff]!;
}

/**
 * A number to half-precision bits. The number is first taken as an f32 (Math.fround), then
 * rounded to nearest-even half; overflow gives ±inf, underflow ±0 or a subnormal. NaN stays
 * NaN, keeping the top 10 payload bits (set to 1 if they are all zero), like numpy's cast.
 */
export function f32ToF16(f: number): number {
  scratchF32[0] = f;
  const x = scratchU32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    const payload = mant >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 1 : payload);
  }
  if (exp >= 143) return sign | 0x7c00; // |f| >= 2^16: inf
  if (exp >= 113) {
    // normal half range (|f| >= 2^-14); a carry out of the mantissa bumps the exponent,
    // and out of the largest finite value gives inf, both of which are right
    let h = ((exp - 112) << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }
  if (exp < 102) return sign; // |f| < 2^-25: rounds to ±0 (exactly 2^-25 is handled below)
  // subnormal half: units of 2^-24; full significand m * 2^(exp-150) = m >> (126 - exp) units
  const m = mant | 0x800000;
  const shift = 126 - exp; // 14..24
  let h = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rem > half || (rem === half && (h & 1) !== 0)) h++;
  return sign | h;
}

/**
 * A number to bfloat16 bits: taken as an f32, rounded to nearest-even; NaN becomes a quiet
 * NaN with the same sign and top payload bits (as ggml_compute_fp32_to_bf16).
 */
export function f32ToBF16(f: number): number {
  scratchF32[0] = f;
  const x = scratchU32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40;
  return Math.floor((x + 0x7fff + ((x >>> 16) & 1)) / 65536) & 0xffff;
}
