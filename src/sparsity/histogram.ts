// Magnitude histograms with ~10,000 log-spaced bins, binned straight from the float's bits: the
// exponent and the top 8 mantissa bits, so every power of two (2^-24 .. 2^16) gets 256 bins of at
// most 0.4% relative width. Quantiles interpolate linearly inside a bin.

const MANT = 8;
const SHIFT = 23 - MANT;
const LO_EXP = -24;
const HI_EXP = 16;
/** bins per histogram */
export const NBINS = (HI_EXP - LO_EXP) << MANT;
const BASE = (127 + LO_EXP) << MANT;

const f1 = new Float32Array(1);
const i1 = new Int32Array(f1.buffer);

/** Lower edge of bin b (bin 0 starts at 0 and holds everything below 2^-24). */
export function binEdge(b: number): number {
  if (b <= 0) return 0;
  i1[0] = (Math.min(b, NBINS) + BASE) << SHIFT;
  return f1[0]!;
}

export class Histogram {
  readonly counts = new Float64Array(NBINS);
  total = 0;
  private scratch = new Float32Array(0);

  /** Add |x[o..o+n)| (times scale[j], if given). */
  add(x: Float32Array, o: number, n: number, scale?: Float32Array): void {
    let v = x.subarray(o, o + n);
    if (scale) {
      if (this.scratch.length < n) this.scratch = new Float32Array(n);
      const s = this.scratch;
      for (let j = 0; j < n; j++) s[j] = v[j]! * scale[j]!;
      v = s.subarray(0, n);
    }
    const bits = new Int32Array(v.buffer, v.byteOffset, n);
    const c = this.counts;
    for (let j = 0; j < n; j++) {
      let b = ((bits[j]! & 0x7fffffff) >>> SHIFT) - BASE;
      if (b < 0) b = 0;
      else if (b >= NBINS) b = NBINS - 1;
      c[b]!++;
    }
    this.total += n;
  }

  /** The value below which a share q of the mass lies (0 for q ≤ 0). */
  quantile(q: number): number {
    if (q <= 0 || this.total === 0) return 0;
    const target = Math.min(q, 1) * this.total;
    let cum = 0;
    for (let b = 0; b < NBINS; b++) {
      const c = this.counts[b]!;
      if (c > 0 && cum + c >= target) {
        const lo = binEdge(b);
        const hi = binEdge(b + 1);
        return lo + ((target - cum) / c) * (hi - lo);
      }
      cum += c;
    }
    return binEdge(NBINS);
  }
}
