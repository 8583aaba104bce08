// Helpers shared by the kernel files.

/** IEEE half (low 16 bits of h) to f32, exact for every value incl. subnormals, ±inf, NaN. */
// @ts-ignore: decorator
@inline export function f16(h: u32): f32 {
  let bits = reinterpret<u32>(reinterpret<f32>((h & 0x7fff) << 13) * reinterpret<f32>(0x77800000)); // * 2^112
  bits |= (h & 0x8000) << 16;
  if ((h & 0x7c00) == 0x7c00) bits |= 0x7f800000;
  return reinterpret<f32>(bits);
}

/** f32 to IEEE half, rounded to nearest even (as the F16C instruction does): overflow → ±inf, NaN stays NaN. */
export function f32to16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  let a = x & 0x7fffffff;
  if (a >= 0x7f800000) return sign | (a > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (a >= 0x477ff000) return sign | 0x7c00; // ≥ 65520 rounds to infinity
  if (a < 0x38800000) return sign | <u32>nearest(reinterpret<f32>(a) * 16777216); // subnormal: units of 2^-24
  a -= 0x38000000; // rebias the exponent (127 → 15)
  a += 0xfff + ((a >> 13) & 1);
  return sign | (a >> 13);
}

// ggml type ids (src/quant/types.ts)
export const F32: i32 = 0;
export const F16: i32 = 1;
export const Q4_0: i32 = 2;
export const Q4_1: i32 = 3;
export const Q5_0: i32 = 6;
export const Q5_1: i32 = 7;
export const Q8_0: i32 = 8;
export const Q4_K: i32 = 12;
export const Q5_K: i32 = 13;
export const Q6_K: i32 = 14;
export const BF16: i32 = 30;

/** the sum of four f32 lanes */
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/** The 5th bits of a Q5_0/Q5_1 block: bytes j of the result (j < 16) are 0xFF where bit `base + j` of qh is set. */
// @ts-ignore: decorator
@inline export function qhMask(qh: u32, hiHalf: bool): v128 {
  const s = i32x4.splat(qh);
  const spread = hiHalf
    ? i8x16.shuffle(s, s, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
    : i8x16.shuffle(s, s, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const bit = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  return i8x16.eq(v128.and(spread, bit), bit);
}

// Q4_K / Q5_K: the 6-bit scale and min of group j (0..7) from the 12 bytes at p.
// @ts-ignore: decorator
@inline export function kScale(p: usize, j: i32): i32 {
  return j < 4 ? <i32>load<u8>(p + j) & 63 : (<i32>load<u8>(p + j + 4) & 15) | ((<i32>load<u8>(p + j - 4) >> 6) << 4);
}
// @ts-ignore: decorator
@inline export function kMin(p: usize, j: i32): i32 {
  return j < 4 ? <i32>load<u8>(p + j + 4) & 63 : (<i32>load<u8>(p + j + 4) >> 4) | ((<i32>load<u8>(p + j) >> 6) << 4);
}
