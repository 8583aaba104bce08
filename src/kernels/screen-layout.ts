// The sparse output layer's screen as it lies in memory (asm/screen.ts is the kernel, and
// src/sparsity/head.ts the reference). The screen's columns are W's in another order, perm (the
// columns holding most of the calibration states' h ⊙ c first), so that its first nb1 64-column
// blocks can screen every row (the first stage) and the rest refine the rows that stage keeps (the
// second). One buffer holds, in this order,
//   codes       groups × nb1 × 128 bytes: per group of four rows and first-stage 64-column block,
//               each row's 32 code bytes (4-bit codes, low and high nibbles 16 columns apart)
//   codes2      groups × nb2 × 128 bytes: the same for the last nb2 = nb − nb1 blocks
//   row scales  4·groups f32 (padding rows 0)
//   col scales  cols f32, in the screen's column order: c_j = (max_i |W_i,perm[j]|)^0.75 (1 for an
//               all-zero column); the screen holds W_i,perm[j] / c_j
//   perm        cols i32: screen column j is W's column perm[j]
// nb1 = nb is one stage (codes2 empty): the screen is built so, then split (splitScreen, in place).
// The kernels and the reference share it, and the cache file beside the model stores it as is.

/** names this layout and its column scales in the cache file's key and in head profiles */
export const SCREEN_FORMAT = 'row-scales, columns by colmax^0.75 in calibration-energy order, 64-column blocks, two stages';

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

/**
 * The screen's column order: W's columns by descending energy c_j²·energy[j] (energy[j] = Σ h_j²
 * over calibration states: the share of ‖h ⊙ c‖² column j holds), ties by index; W's own order
 * without energy.
 */
export function screenOrder(c: Float32Array, energy?: ArrayLike<number>): Int32Array {
  const n = c.length;
  const perm = Int32Array.from({ length: n }, (_, j) => j);
  if (!energy) return perm;
  if (energy.length !== n) throw new RangeError(`screenOrder: ${energy.length} energies for ${n} columns`);
  const e = Float64Array.from({ length: n }, (_, j) => c[j]! * c[j]! * energy[j]!);
  return perm.sort((a, b) => e[b]! - e[a]! || a - b);
}

/**
 * Set S's column order and its column scales in that order from W's column scales c (W's order):
 * perm = screenOrder(c, energy), colScale[j] = c[perm[j]]. Both screen builders call this.
 */
export function orderColumns(S: ScreenView, c: Float32Array, energy?: ArrayLike<number>): void {
  S.perm.set(screenOrder(c, energy));
  for (let j = 0; j < S.cols; j++) S.colScale[j] = c[S.perm[j]!]!;
}

export interface ScreenLayout {
  readonly rows: number;
  readonly cols: number;
  /** 64-column blocks per row, of the first stage, of the second */
  readonly nb: number;
  readonly nb1: number;
  readonly nb2: number;
  /** groups of four rows */
  readonly groups: number;
  /** byte offsets of the second stage's codes, the row scales, the column scales and perm */
  readonly codes2At: number;
  readonly rowScaleAt: number;
  readonly colScaleAt: number;
  readonly permAt: number;
  readonly bytes: number;
}

/** The layout of a rows × cols screen whose first stage reads nb1 of its cols/64 blocks (default all). */
export function screenLayout(rows: number, cols: number, nb1 = cols / 64): ScreenLayout {
  const nb = cols / 64, groups = Math.ceil(rows / 4);
  if (!(Number.isInteger(nb1) && nb1 >= 1 && nb1 <= nb)) throw new RangeError(`screen of ${rows}x${cols}: a first stage of ${nb1} blocks (1..${nb})`);
  const codes2At = groups * nb1 * SCREEN_BLOCK_BYTES;
  const rowScaleAt = groups * nb * SCREEN_BLOCK_BYTES, colScaleAt = rowScaleAt + 16 * groups, permAt = colScaleAt + 4 * cols;
  return { rows, cols, nb, nb1, nb2: nb - nb1, groups, codes2At, rowScaleAt, colScaleAt, permAt, bytes: permAt + 4 * cols };
}

/** A screen in memory: the layout and views of its parts. */
export interface ScreenView extends ScreenLayout {
  /** the whole buffer */
  readonly data: Uint8Array;
  readonly codes: Uint8Array;
  readonly codes2: Uint8Array;
  readonly rowScale: Float32Array;
  readonly colScale: Float32Array;
  readonly perm: Int32Array;
}

export function screenView(rows: number, cols: number, data: Uint8Array, nb1 = cols / 64): ScreenView {
  const L = screenLayout(rows, cols, nb1);
  if (data.byteLength < L.bytes) throw new RangeError(`screen of ${rows}x${cols}: needs ${L.bytes} bytes, the buffer has ${data.byteLength}`);
  if ((data.byteOffset & 3) !== 0) throw new RangeError('screen: the buffer must be 4-byte aligned');
  return {
    ...L,
    data: data.subarray(0, L.bytes),
    codes: data.subarray(0, L.codes2At),
    codes2: data.subarray(L.codes2At, L.rowScaleAt),
    rowScale: new Float32Array(data.buffer, data.byteOffset + L.rowScaleAt, 4 * L.groups),
    colScale: new Float32Array(data.buffer, data.byteOffset + L.colScaleAt, cols),
    perm: new Int32Array(data.buffer, data.byteOffset + L.permAt, cols),
  };
}

/**
 * Split a one-stage screen (nb1 = nb) in place into a first stage of nb1 blocks and a second of
 * the rest: each group's first nb1 blocks stay in codes, the others move to codes2.
 */
export function splitScreen(S: ScreenView, nb1: number): ScreenView {
  if (S.nb1 !== S.nb) throw new Error('splitScreen: the screen is split already');
  const next = screenLayout(S.rows, S.cols, nb1);
  if (nb1 === S.nb) return S;
  const B = SCREEN_BLOCK_BYTES, { groups, nb } = S, nb2 = nb - nb1;
  const codes = S.data;
  const second = new Uint8Array(groups * nb2 * B);
  for (let g = 0; g < groups; g++) second.set(codes.subarray((g * nb + nb1) * B, (g + 1) * nb * B), g * nb2 * B);
  for (let g = 1; g < groups; g++) codes.copyWithin(g * nb1 * B, g * nb * B, (g * nb + nb1) * B);
  codes.set(second, next.codes2At);
  return screenView(S.rows, S.cols, S.data, nb1);
}
