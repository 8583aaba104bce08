// e^x in SIMD, shared by attention (softmax) and the activations.

const LOG2E: f32 = 1.44269504088896341;
const LN2_HI: f32 = 0.693359375; // 355/512: n·LN2_HI is exact for the |n| <= 126 used here
const LN2_LO: f32 = -2.12194440e-4;
/** below ln(FLT_MIN) the result is flushed to 0 (the reference gives a subnormal there) */
const EXP_LO: f32 = -87.33654;

/**
 * e^x for four lanes, x <= 0 (Cephes expf: x = n·ln2 + r, |r| <= ln2/2, a degree-7 polynomial
 * for e^r, times 2^n built in the exponent bits). Within 2 ulp of the correctly rounded value;
 * lanes below EXP_LO (incl. -inf) give 0, NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function expx4(x: v128): v128 {
  const lo = f32x4.splat(EXP_LO);
  const xc = f32x4.pmax(x, lo); // x < lo ? lo : x (keeps NaN)
  const n = f32x4.nearest(f32x4.mul(xc, f32x4.splat(LOG2E)));
  let r = f32x4.sub(xc, f32x4.mul(n, f32x4.splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO)));
  let p = f32x4.add(f32x4.mul(f32x4.splat(1.9875691500e-4), r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1));
  const pow2n = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(p, pow2n), f32x4.lt(x, lo));
}

