// Reference kernels in plain TypeScript: the ground truth for every faster implementation.
import { dequantize, dotRow } from '../../quant/dequant.js';
import { ggmlRow, type QTensor } from '../../model/tensor.js';
import type { Kernels, MatvecOptions } from '../kernels.js';
import { attention } from './attention.js';
import { refOps } from './ops.js';

let scratch = new Float32Array(0);
function scratchOf(n: number): Float32Array {
  if (scratch.length < n) scratch = new Float32Array(n);
  return scratch;
}

function matvec(W: QTensor, x: Float32Array, out: Float32Array, opts?: MatvecOptions): void {
  const { cols } = W;
  const t = W.type.id;
  let xin = x;
  if (opts?.inputs) {
    // the reference semantics of input-channel sparsity: dropped channels count as zero
    xin = scratchOf(cols).fill(0, 0, cols);
    const { idx, n } = opts.inputs;
    for (let i = 0; i < n; i++) xin[idx[i]!] = x[idx[i]!]!;
  }
  const row = (r: number): number => {
    const g = ggmlRow(W, r);
    return dotRow(t, g.data, g.offset, xin, 0, cols);
  };
  const rows = opts?.rows;
  if (rows) {
    out.fill(0, 0, W.rows);
    for (let i = 0; i < rows.n; i++) {
      const r = rows.idx[i]!;
      out[r] = row(r);
    }
    return;
  }
  for (let r = 0; r < W.rows; r++) out[r] = row(r);
}

function matmul(W: QTensor, X: Float32Array, n: number, Out: Float32Array): void {
  const { cols, rows } = W;
  const w = scratchOf(cols);
  for (let r = 0; r < rows; r++) {
    const g = ggmlRow(W, r);
    dequantize(W.type.id, g.data, g.offset, w, 0, cols);
    for (let t = 0; t < n; t++) {
      const xo = t * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += w[c]! * X[xo + c]!;
      Out[t * rows + r] = s;
    }
  }
}

export const refKernels: Kernels = {
  name: 'ref',
  threads: 1,
  matvec,
  matvecs(Ws, x, outs, inputs, rows) {
    for (let i = 0; i < Ws.length; i++) matvec(Ws[i]!, x, outs[i]!, { inputs: inputs ?? null, rows: rows?.[i] ?? null });
  },
  matmul,
  matmuls(Ws, X, n, Outs) {
    for (let i = 0; i < Ws.length; i++) matmul(Ws[i]!, X, n, Outs[i]!);
  },
  attention,
  attentions(args) {
    for (const a of args) attention(a);
  },
  ...refOps,
};
