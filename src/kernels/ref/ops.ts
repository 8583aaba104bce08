// Element-wise operations of the forward pass, in plain TypeScript (offset-based, no allocation).

/** out[o..o+n) = x[xo..xo+n) / rms(x) * w */
export function rmsnorm(out: Float32Array, o: number, x: Float32Array, xo: number, w: Float32Array, n: number, eps: number): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[xo + i]! * x[xo + i]!;
  const s = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) out[o + i] = x[xo + i]! * s * w[i]!;
}

/** In-place softmax of a[o..o+n). */
export function softmax(a: Float32Array, o: number, n: number): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (a[o + i]! > max) max = a[o + i]!;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const e = Math.exp(a[o + i]! - max);
    a[o + i] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let i = 0; i < n; i++) a[o + i]! *= inv;
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

const GELU_C = Math.sqrt(2 / Math.PI);
/** GELU, tanh approximation (what Gemma was trained with). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(GELU_C * (x + 0.044715 * x * x * x)));
}

/**
 * Rotate `nHeads` heads of size `headDim` stored at x[o..] by position-dependent angles.
 * cs holds dims/2 cosines then dims/2 sines for this position; neox pairs (i, i+dims/2), else (2i, 2i+1).
 */
export function rope(x: Float32Array, o: number, nHeads: number, headDim: number, dims: number, cs: Float32Array, neox: boolean): void {
  const half = dims / 2;
  for (let h = 0; h < nHeads; h++) {
    const b = o + h * headDim;
    for (let i = 0; i < half; i++) {
      const i0 = neox ? b + i : b + 2 * i;
      const i1 = neox ? b + i + half : b + 2 * i + 1;
      const x0 = x[i0]!;
      const x1 = x[i1]!;
      const c = cs[i]!, s = cs[half + i]!;
      x[i0] = x0 * c - x1 * s;
      x[i1] = x0 * s + x1 * c;
    }
  }
}

/** The element-wise operations over arrays (the reference implementation of ElementwiseOps). */
export const refOps = {
  rmsnorm,
  activate(x: Float32Array, o: number, n: number, act: 'silu' | 'gelu'): void {
    const f = act === 'gelu' ? gelu : silu;
    for (let i = o; i < o + n; i++) x[i] = f(x[i]!);
  },
  mul(a: Float32Array, o: number, b: Float32Array, bo: number, n: number): void {
    for (let i = 0; i < n; i++) a[o + i]! *= b[bo + i]!;
  },
  add(a: Float32Array, o: number, b: Float32Array, bo: number, n: number): void {
    for (let i = 0; i < n; i++) a[o + i]! += b[bo + i]!;
  },
  rope,
  keepAbove(x: Float32Array, t: number, scale: Float32Array | null, idx: Int32Array): number {
    const n = x.length;
    let k = 0;
    // one pass without a branch on the (unpredictable) comparison: every j is written, kept ones advance
    if (scale) for (let j = 0; j < n; j++) { idx[k] = j; k += Math.fround(Math.abs(x[j]!) * scale[j]!) > t ? 1 : 0; }
    else for (let j = 0; j < n; j++) { idx[k] = j; k += Math.abs(x[j]!) > t ? 1 : 0; }
    return k;
  },
};
