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
}

export function rowBytes(type: QuantInfo, cols: number): number {
  return (cols / type.blockSize) * type.blockBytes;
}
