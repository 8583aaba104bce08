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
