// The linears behind each site, dequantized once for calibration: transposed (one contiguous
// row per input channel) for the allocation's error estimates, and their column norms (WINA).

import type { Model } from '../model/load.js';
import { ggmlRow, type QTensor } from '../model/tensor.js';
import { dequantize } from '../quant/dequant.js';
import type { LinearSite } from './policy.js';

/** The linears that read a site's input (attn_q: q alone). */
export function siteLinears(model: Model, layer: number, site: LinearSite): QTensor[] {
  const L = model.weights.layers[layer]!;
  switch (site) {
    case 'attn_in': return [L.wq, L.wk, L.wv];
    case 'attn_q': return [L.wq];
    case 'attn_out': return [L.wo];
    case 'ffn_in': return [L.gate, L.up];
    case 'ffn_down': return [L.down];
  }
}

/** The linears stacked by rows and transposed: WT[j·R + r] = W[r, j], R = total rows. */
export function transposed(Ws: QTensor[]): { WT: Float32Array; rows: number; cols: number } {
  const cols = Ws[0]!.cols;
  const R = Ws.reduce((a, W) => a + W.rows, 0);
  const WT = new Float32Array(R * cols);
  const row = new Float32Array(cols);
  const tmp = new Uint8Array(Math.max(...Ws.map((W) => W.rowBytes)));
  let r0 = 0;
  for (const W of Ws) {
    for (let r = 0; r < W.rows; r++) {
      const g = ggmlRow(W, r, tmp);
      dequantize(W.type.id, g.data, g.offset, row, 0, cols);
      for (let j = 0, o = r0 + r; j < cols; j++, o += R) WT[o] = row[j]!;
    }
    r0 += W.rows;
  }
  return { WT, rows: R, cols };
}

/**
 * ‖W[:, j]‖₂ of the linears stacked by rows (for q/k/v and gate/up, which share an input, the norm
 * of the concatenated matrix: the input channel's weight over all the outputs it feeds).
 */
export function columnNorms(Ws: QTensor[]): Float32Array {
  const cols = Ws[0]!.cols;
  const sq = new Float64Array(cols);
  const row = new Float32Array(cols);
  const tmp = new Uint8Array(Math.max(...Ws.map((W) => W.rowBytes)));
  for (const W of Ws) {
    for (let r = 0; r < W.rows; r++) {
      const g = ggmlRow(W, r, tmp);
      dequantize(W.type.id, g.data, g.offset, row, 0, cols);
      for (let j = 0; j < cols; j++) sq[j]! += row[j]! * row[j]!;
    }
  }
  return Float32Array.from(sq, Math.sqrt);
}
