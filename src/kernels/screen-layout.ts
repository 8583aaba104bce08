// The sparse output layer's screen as it lies in memory (asm/screen.ts is the kernel, and
// src/sparsity/head.ts the reference): one buffer holding, in this order,
//   codes       groups × nb × 128 bytes: per group of four rows and 64-column block, each row's
//               32 code bytes (4-bit codes, low and high nibbles 16 columns apart)
//   row scales  4·groups f32 (padding rows 0)
//   col scales  cols f32: c_j = (max_i |W_ij|)^0.75 (1 for an all-zero column); the screen holds W_ij / c_j
// The kernels and the reference share it, and the cache file beside the model stores it as is.

/** names this layout and its column scales in the cache file's key and in head profiles */
export const SCREEN_FORMAT = 'row-scales, columns by colmax^0.75, 64-column blocks';

/** bytes of one 64-column block of a group of four rows */
export const SCREEN_BLOCK_BYTES = 128;

/**
 * The column scale c_j from the column's largest magnitude: (max_i |W_ij|)^0.75, 1 for a zero
 * column. The exponent trades the columns' ranges against the rows': on 2,048 WikiText-2 states
 * (numpy, calibrated on half, margins c = 1.25), rows rescored median / p99 at 0.5, 0.75, 1:
 * Gemma-3-270M 44 / 914, 19 / 384, 22 / 386; SmolLM2-135M 41 / 1,690, 54 / 1,348, 72 / 2,570.
 */
export function screenColScale(colmax: number): number {
  return colmax > 0 ? Math.fround(Math.pow(colmax, 0.75)) : 1;
}

export interface ScreenLayout {
  readonly rows: number;
  readonly cols: number;
  /** 64-column blocks per row */
  readonly nb: number;
  /** groups of four rows */
  readonly groups: number;
  readonly codeBytes: number;
  /** byte offsets of the row scales and the column scales */
  readonly rowScaleAt: number;
  readonly colScaleAt: number;
  readonly bytes: number;
}

export function screenLayout(rows: number, cols: number): ScreenLayout {
  const nb = cols / 64, groups = Math.ceil(rows / 4);
  const codeBytes = groups * nb * SCREEN_BLOCK_BYTES;
  const rowScaleAt = codeBytes, colScaleAt = rowScaleAt + 16 * groups;
  return { rows, cols, nb, groups, codeBytes, rowScaleAt, colScaleAt, bytes: colScaleAt + 4 * cols };
}

/** A screen in memory: the layout and views of its three parts. */
export interface ScreenView extends ScreenLayout {
  /** the whole buffer (codes, row scales, col scales) */
  readonly data: Uint8Array;
  readonly codes: Uint8Array;
  readonly rowScale: Float32Array;
  readonly colScale: Float32Array;
}

export function screenView(rows: number, cols: number, data: Uint8Array): ScreenView {
  const L = screenLayout(rows, cols);
  if (data.byteLength < L.bytes) throw new RangeError(`screen of ${rows}x${cols}: needs ${L.bytes} bytes, the buffer has ${data.byteLength}`);
  if ((data.byteOffset & 3) !== 0) throw new RangeError('screen: the buffer must be 4-byte aligned');
  return {
    ...L,
    data: data.subarray(0, L.bytes),
    codes: data.subarray(0, L.codeBytes),
    rowScale: new Float32Array(data.buffer, data.byteOffset + L.rowScaleAt, 4 * L.groups),
    colScale: new Float32Array(data.buffer, data.byteOffset + L.colScaleAt, cols),
  };
}
