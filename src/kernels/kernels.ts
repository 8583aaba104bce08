// The kernel interface every linear layer goes through. The plain TypeScript implementation
// in ref/ is the ground truth; a WebAssembly SIMD implementation replaces it behind this
// interface and is tested against it.
import type { QTensor } from '../model/tensor.js';
import type { Selection } from '../sparsity/policy.js';

export interface MatvecOptions {
  /** use only these input channels; the result equals W·(x with the others zeroed) */
  readonly inputs?: Selection | null;
  /** compute only these output rows; the others are left at 0 */
  readonly rows?: Selection | null;
}

/** One query position attending over cache positions start..start+n-1 (grouped-query heads). */
export interface AttentionArgs {
  /** queries of all heads: nHeads × headDim from qOffset */
  readonly q: Float32Array;
  readonly qOffset: number;
  /** one layer's cache: [position][nKvHeads × headDim] and [position][nKvHeads × headDimV] */
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly start: number;
  readonly n: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly headDimV: number;
  readonly scale: number;
  /** nHeads × headDimV from outOffset; heads not selected are 0 */
  readonly out: Float32Array;
  readonly outOffset: number;
  /** compute only these heads (null = all) */
  readonly heads: Selection | null;
}

export type Activation = 'silu' | 'gelu';

/**
 * The element-wise operations of the forward pass (offset-based, in place where it says so).
 * The WebAssembly kernels work in place on arrays in their memory (the forward pass allocates its
 * run state there) and copy anything else once.
 */
export interface ElementwiseOps {
  /** out[o..o+n) = x[xo..xo+n) / rms(x) · w */
  rmsnorm(out: Float32Array, o: number, x: Float32Array, xo: number, w: Float32Array, n: number, eps: number): void;
  /** x[o..o+n) = act(x) */
  activate(x: Float32Array, o: number, n: number, act: Activation): void;
  /** a[o..o+n) ·= b[bo..bo+n) */
  mul(a: Float32Array, o: number, b: Float32Array, bo: number, n: number): void;
  /** a[o..o+n) += b[bo..bo+n) */
  add(a: Float32Array, o: number, b: Float32Array, bo: number, n: number): void;
  /**
   * Rotate nHeads heads of headDim at x[o..]: pairs (i, i + dims/2) (neox) or (2i, 2i + 1), by
   * angles whose cos and sin are in cs (dims/2 cos, then dims/2 sin).
   */
  rope(x: Float32Array, o: number, nHeads: number, headDim: number, dims: number, cs: Float32Array, neox: boolean): void;
  /**
   * Input-channel selection: writes the j with |x_j|·scale_j > t (scale_j = 1 without scale; the
   * product rounded to f32) ascending to idx (room for x.length) and returns their count.
   */
  keepAbove(x: Float32Array, t: number, scale: Float32Array | null, idx: Int32Array): number;
}

export interface Kernels extends ElementwiseOps {
  readonly name: string;
  /** threads each call is split over */
  readonly threads: number;
  /** out[r] = Σ_c W[r,c]·x[c] for all rows (or the selected ones). */
  matvec(W: QTensor, x: Float32Array, out: Float32Array, opts?: MatvecOptions): void;
  /**
   * Several linears that share one input (q/k/v, gate/up) in one call: outs[i] = Ws[i]·x, with one
   * input selection for all and optional output rows per linear.
   */
  matvecs(Ws: readonly QTensor[], x: Float32Array, outs: readonly Float32Array[], inputs?: Selection | null,
    rows?: readonly (Selection | null)[] | null): void;
  /** Batched: X is n rows of W.cols, Out n rows of W.rows; each weight block is decoded once for all n. */
  matmul(W: QTensor, X: Float32Array, n: number, Out: Float32Array): void;
  /** matmul for several linears that share X. */
  matmuls(Ws: readonly QTensor[], X: Float32Array, n: number, Outs: readonly Float32Array[]): void;
  /** softmax(q·Kᵀ·scale)·V for one position. */
  attention(args: AttentionArgs): void;
  /** attention for several positions (a prefill batch) in one call. */
  attentions(args: readonly AttentionArgs[]): void;
  /** Where the model loader should place the weight bytes (e.g. WebAssembly memory); absent = ordinary buffer. */
  alloc?(bytes: number): Uint8Array;
  /**
   * Rearrange a weight matrix (in place, same bytes) into the layout these kernels compute fastest
   * (QTensor.layout), or return it as it is; the model loader offers every layer linear.
   */
  pack?(W: QTensor): QTensor;
  /** Stop helper threads (the kernels must not be used afterwards); a no-op where there are none. */
  close?(): void;
}
