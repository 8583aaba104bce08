// The screening copy of the output matrix (src/sparsity/head.ts): 4-bit codes in blocks of 32
// along the hidden dimension with one bf16 scale per block, FOUR ROWS INTERLEAVED so that one
// pass multiplies a block of four rows and reduces their sums into the lanes of one vector
// (one convert, one scale multiply and one add per four rows and 32 columns, instead of per row).
//
// Layout, for row group g (rows 4g..4g+3; the last group zero-padded) and block b of nb:
//   at w + (g·nb + b)·72:  4 × bf16 scale (row 0..3), then 4 × 16 bytes of codes (row r at 8 + 16r)
//   code byte j of a row: low nibble = column j, high nibble = column j + 16; value = d·(code − 8)
// The activation is Q8_0 (asm/q8.ts), as for Q4_0 weights.

import { BLK32, QS, hi4, lo4, padd, pdot, pwiden } from './q8';

export const SCREEN_GROUP_BYTES: i32 = 72;

/** Σ over the 32 columns of one row's block: four partial sums (i32x4). */
// @ts-ignore: decorator
@inline function rowBlock(q: usize, v: v128): v128 {
  return pwiden(padd(pdot(q, lo4(v)), pdot(q + 16 * QS, hi4(v))));
}

/**
 * Screened scores of row groups [g0, g1): out[4g + r] = row (4g + r) · activation (Q8_0 at qa).
 * nb = blocks of 32 per row.
 */
export function screenMatvec(w: usize, nb: i32, g0: i32, g1: i32, qa: usize, out: usize): void {
  const gBytes = <usize>nb * SCREEN_GROUP_BYTES;
  for (let g = g0; g < g1; g++) {
    let p = w + <usize>g * gBytes;
    let q = qa;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++, p += SCREEN_GROUP_BYTES, q += BLK32) {
      const e0 = rowBlock(q, v128.load(p, 8));
      const e1 = rowBlock(q, v128.load(p, 24));
      const e2 = rowBlock(q, v128.load(p, 40));
      const e3 = rowBlock(q, v128.load(p, 56));
      // transpose-add: lane r = the whole block sum of row r
      const t0 = i32x4.add(i32x4.shuffle(e0, e1, 0, 4, 1, 5), i32x4.shuffle(e0, e1, 2, 6, 3, 7));
      const t1 = i32x4.add(i32x4.shuffle(e2, e3, 0, 4, 1, 5), i32x4.shuffle(e2, e3, 2, 6, 3, 7));
      let s = i32x4.add(i32x4.shuffle(t0, t1, 0, 1, 4, 5), i32x4.shuffle(t0, t1, 2, 3, 6, 7));
      const M = q + 32 * QS;
      // Σ(c − 8)·x = Σc·x − 8·Σx
      s = i32x4.sub(s, i32x4.splat(load<i32>(M, 4) << 3));
      // bf16 → f32: the 16 bits are the high half of the f32
      const d = i32x4.shl(i32x4.extend_low_i16x8_u(v128.load64_zero(p)), 16);
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(d, f32x4.splat(load<f32>(M)))));
    }
    v128.store(out + (<usize>g << 4), acc);
  }
}
