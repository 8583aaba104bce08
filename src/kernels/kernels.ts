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

export interface Kernels {
  readonly name: string;
  /** out[r] = Σ_c W[r,c]·x[c] for all rows (or the selected ones). */
  matvec(W: QTensor, x: Float32Array, out: Float32Array, opts?: MatvecOptions): void;
  /** Batched: X is n rows of W.cols, Out n rows of W.rows; each weight block is decoded once for all n. */
  matmul(W: QTensor, X: Float32Array, n: number, Out: Float32Array): void;
  /** Where the model loader should place the weight bytes (e.g. WebAssembly memory); absent = ordinary buffer. */
  alloc?(bytes: number): Uint8Array;
}
