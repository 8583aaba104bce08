// A weight matrix kept in its quantized blocks: a view into one shared byte buffer
// (later a WebAssembly memory), never expanded to f32 as a whole.
import type { QuantInfo } from '../quant/types.js';

export interface QTensor {
  readonly name: string;
  readonly type: QuantInfo;
  /** output dimension (ggml ne[1]) */
  readonly rows: number;
  /** input dimension, the length of one row (ggml ne[0]) */
  readonly cols: number;
  /** the buffer holding all weights */
  readonly data: Uint8Array;
  /** byte offset of row 0 in `data` */
  readonly offset: number;
  readonly rowBytes: number;
  /**
   * Byte layout: ggml rows (absent), or 'r4': four consecutive rows interleaved block by block
   * (asm/r4.ts; the wasm kernels' decode layout), same bytes (Q5_0's fifth bits as bit planes).
   * Read a row with ggmlRow().
   */
  readonly layout?: 'r4';
}

/** Field sizes of a ggml 32-block, for the types the interleaved layout has (asm/r4.ts). */
const R4_FIELDS: Record<number, readonly number[]> = { 2: [2, 16], 3: [2, 2, 16], 6: [2, 4, 16], 8: [2, 32] };

/**
 * Row r of W in the ggml layout: a view into W.data, or for interleaved rows a copy into `tmp`
 * (rowBytes long; allocated when absent).
 */
export function ggmlRow(W: QTensor, r: number, tmp?: Uint8Array): { data: Uint8Array; offset: number } {
  if (W.layout !== 'r4') return { data: W.data, offset: W.offset + r * W.rowBytes };
  const fields = R4_FIELDS[W.type.id];
  if (!fields) throw new Error(`tensor ${W.name}: no interleaved layout for ${W.type.name}`);
  const out = tmp && tmp.length >= W.rowBytes ? tmp : new Uint8Array(W.rowBytes);
  const bb = fields.reduce((a, b) => a + b, 0);
  const nb = W.rowBytes / bb;
  const k = r & 3;
  const group = W.offset + (r >> 2) * 4 * W.rowBytes;
  const q5 = W.type.id === 6;
  for (let b = 0; b < nb; b++) {
    const sb = group + b * 4 * bb;
    let off = 0;
    for (const f of fields) {
      const at = sb + 4 * off + k * f;
      if (q5 && off === 2) {
        // Q5_0's fifth bits are bit planes: bit 2k of byte j is bit j of row k's qh, bit 2k+1 bit 16 + j
        let lo = 0, hi = 0;
        for (let j = 0; j < 16; j++) {
          const byte = W.data[sb + 8 + j]!;
          lo |= ((byte >> (2 * k)) & 1) << j;
          hi |= ((byte >> (2 * k + 1)) & 1) << j;
        }
        const o = b * bb + off; // the u32, little-endian
        out[o] = lo & 255; out[o + 1] = lo >> 8; out[o + 2] = hi & 255; out[o + 3] = hi >> 8;
      } else out.set(W.data.subarray(at, at + f), b * bb + off);
      off += f;
    }
  }
  return { data: out, offset: 0 };
}

export function rowBytes(type: QuantInfo, cols: number): number {
  return (cols / type.blockSize) * type.blockBytes;
}
