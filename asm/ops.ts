// Element-wise operations of the forward pass in SIMD, on f32 arrays in the shared memory
// (the forward pass's run state lives there): RMSNorm, SiLU / GELU, products, sums, RoPE.
// Lengths need not be multiples of 4; pointers are 4-byte aligned.

import { expx4 } from './exp';

/** out[0..n) = x / rms(x) · w (Σx² in f64, as llama.cpp sums it) */
export function rmsnorm(out: usize, x: usize, w: usize, n: i32, eps: f32): void {
  let s2 = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const v = v128.load(x + (<usize>i << 2));
    const lo = f64x2.promote_low_f32x4(v), hi = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
    s2 = f64x2.add(s2, f64x2.add(f64x2.mul(lo, lo), f64x2.mul(hi, hi)));
  }
  let ss = f64x2.extract_lane(s2, 0) + f64x2.extract_lane(s2, 1);
  for (; i < n; i++) {
    const v = <f64>load<f32>(x + (<usize>i << 2));
    ss += v * v;
  }
  const s = <f32>(1 / Math.sqrt(ss / <f64>n + <f64>eps));
  const sv = f32x4.splat(s);
  i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.mul(f32x4.mul(v128.load(x + o), sv), v128.load(w + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(x + o) * s * load<f32>(w + o));
  }
}

/** x · sigmoid(x) from e = exp(−|x|) ∈ (0, 1]: never overflows */
// @ts-ignore: decorator
@inline function silu4(x: v128): v128 {
  const e = expx4(f32x4.neg(f32x4.abs(x)));
  const r = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), e));
  // x ≥ 0: x / (1 + e);  x < 0: x·e / (1 + e)
  return f32x4.mul(f32x4.mul(x, r), v128.bitselect(f32x4.splat(1), e, f32x4.ge(x, f32x4.splat(0))));
}

const GELU_C: f32 = 0.7978845608028654; // √(2/π)

/**
 * GELU, tanh approximation: 0.5·x·(1 + tanh u) = x·(u ≥ 0 ? 1 : e)/(1 + e) with e = exp(−2|u|),
 * a form without the cancellation of 1 + tanh u for negative u
 */
// @ts-ignore: decorator
@inline function gelu4(x: v128): v128 {
  const u = f32x4.mul(f32x4.splat(GELU_C), f32x4.add(x, f32x4.mul(f32x4.splat(0.044715), f32x4.mul(x, f32x4.mul(x, x)))));
  const e = expx4(f32x4.mul(f32x4.splat(-2), f32x4.abs(u)));
  const r = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), e));
  return f32x4.mul(f32x4.mul(x, r), v128.bitselect(f32x4.splat(1), e, f32x4.ge(u, f32x4.splat(0))));
}

/** x[0..n) = act(x), act 0 = SiLU, 1 = GELU (tanh) */
export function activate(x: usize, n: i32, act: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    v128.store(p, act == 0 ? silu4(v128.load(p)) : gelu4(v128.load(p)));
  }
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    const v = f32x4.splat(load<f32>(p));
    store<f32>(p, f32x4.extract_lane(act == 0 ? silu4(v) : gelu4(v), 0));
  }
}

/** a[0..n) op= b[0..n): op 0 = multiply, 1 = add */
export function combine(a: usize, b: usize, n: i32, op: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    const x = v128.load(a + o), y = v128.load(b + o);
    v128.store(a + o, op == 0 ? f32x4.mul(x, y) : f32x4.add(x, y));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(a + o, op == 0 ? load<f32>(a + o) * load<f32>(b + o) : load<f32>(a + o) + load<f32>(b + o));
  }
}

/**
 * Rotate nHeads heads of headDim at x: pairs (i, i + dims/2) (neox) or (2i, 2i + 1), by the angles
 * whose cos and sin are at cs (dims/2 cos, then dims/2 sin, f32).
 */
export function rope(x: usize, nHeads: i32, headDim: i32, dims: i32, cs: usize, neox: bool): void {
  const half = dims >> 1;
  const sn = cs + (<usize>half << 2);
  for (let h = 0; h < nHeads; h++) {
    const b = x + (<usize>(h * headDim) << 2);
    if (neox) {
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const o = <usize>i << 2;
        const x0 = v128.load(b + o), x1 = v128.load(b + o + (<usize>half << 2));
        const c = v128.load(cs + o), s = v128.load(sn + o);
        v128.store(b + o, f32x4.sub(f32x4.mul(x0, c), f32x4.mul(x1, s)));
        v128.store(b + o + (<usize>half << 2), f32x4.add(f32x4.mul(x0, s), f32x4.mul(x1, c)));
      }
      for (; i < half; i++) {
        const p0 = b + (<usize>i << 2), p1 = b + (<usize>(i + half) << 2);
        const x0 = load<f32>(p0), x1 = load<f32>(p1);
        const c = load<f32>(cs + (<usize>i << 2)), s = load<f32>(sn + (<usize>i << 2));
        store<f32>(p0, x0 * c - x1 * s);
        store<f32>(p1, x0 * s + x1 * c);
      }
    } else {
      for (let i = 0; i < half; i++) {
        const p0 = b + (<usize>(2 * i) << 2);
        const x0 = load<f32>(p0), x1 = load<f32>(p0, 4);
        const c = load<f32>(cs + (<usize>i << 2)), s = load<f32>(sn + (<usize>i << 2));
        store<f32>(p0, x0 * c - x1 * s);
        store<f32>(p0, x0 * s + x1 * c, 4);
      }
    }
  }
}

/**
 * Input-channel selection: writes the j in 0..n with |x_j|·scale_j > t (scale_j = 1 when scale is 0)
 * ascending to idx and returns their count. t is the threshold rounded down to f32, which makes
 * the f32 comparison exact for an f64 one. Branch-free: each candidate is written, kept ones advance.
 */
export function keepAbove(x: usize, n: i32, t: f32, scale: usize, idx: usize): i32 {
  const tv = f32x4.splat(t);
  let k = 0, j = 0;
  for (; j + 4 <= n; j += 4) {
    let v = f32x4.abs(v128.load(x + (<usize>j << 2)));
    if (scale) v = f32x4.mul(v, v128.load(scale + (<usize>j << 2)));
    const m = i32x4.bitmask(f32x4.gt(v, tv));
    store<i32>(idx + (<usize>k << 2), j); k += m & 1;
    store<i32>(idx + (<usize>k << 2), j + 1); k += (m >> 1) & 1;
    store<i32>(idx + (<usize>k << 2), j + 2); k += (m >> 2) & 1;
    store<i32>(idx + (<usize>k << 2), j + 3); k += (m >> 3) & 1;
  }
  for (; j < n; j++) {
    let v = Mathf.abs(load<f32>(x + (<usize>j << 2)));
    if (scale) v *= load<f32>(scale + (<usize>j << 2));
    store<i32>(idx + (<usize>k << 2), j);
    k += <i32>(v > t);
  }
  return k;
}
