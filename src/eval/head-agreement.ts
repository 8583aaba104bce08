// The sparse output layer's agreement with the dense one, as `perplexity --sparse-head` and
// `eval --sparse-head` report it: on a final hidden state whose dense logits are known, the sparse
// head picks its greedy token from the same state and the two are compared; every step records
// how many rows the sparse head computed exactly, hence the head's bytes read against dense.
// (Scores and perplexities stay the dense head's: only the comparison uses the sparse one.)

import { argmax } from '../generate/sampler.js';
import { percentiles, type SparseHead } from '../sparsity/head.js';

export interface HeadAgreement {
  /** steps compared */
  readonly positions: number;
  /** steps where the sparse head's greedy token equals the dense head's */
  readonly equal: number;
  readonly share: number;
  /** rows computed exactly per step (the best screened row included; V on a dense fallback) */
  readonly rescored: { readonly median: number; readonly p99: number; readonly mean: number };
  /** steps where more than the head's limit of rows was needed and the dense head ran instead */
  readonly dense_steps: number;
  /** bytes of the head read per step, on average (screen codes and scales of the stages run, rows computed exactly), over the dense head's */
  readonly head_bytes_ratio: number;
  /** the screen's first stage (two-stage screens): 64-column blocks of all, rows it kept per step */
  readonly first_stage?: { readonly blocks: number; readonly of: number; readonly rows: { readonly median: number; readonly p99: number; readonly mean: number } };
  /** the first few steps that differed (dense and sparse token ids), for inspection */
  readonly misses: readonly { readonly position: number; readonly dense: number; readonly sparse: number }[];
}

export class HeadAgreementMeter {
  private readonly out: Float32Array;
  private readonly rows: number[] = [];
  private readonly first: number[] = [];
  private bytes = 0;
  private positions = 0;
  private equal = 0;
  private denseSteps = 0;
  private readonly misses: { position: number; dense: number; sparse: number }[] = [];

  constructor(readonly head: SparseHead) {
    this.out = new Float32Array(head.V);
  }

  /** The sparse head on state h (D floats at hOffset) against the dense logits at `offset` of `dense`. */
  compare(h: Float32Array, hOffset: number, dense: Float32Array, offset: number): boolean {
    const { V, D } = this.head;
    const n = this.head.logits(hOffset === 0 && h.length === D ? h : h.subarray(hOffset, hOffset + D), this.out);
    this.rows.push(n);
    this.bytes += this.head.lastBytes;
    if (this.head.lastFirst >= 0) this.first.push(this.head.lastFirst);
    if (n >= V) this.denseSteps++;
    const d = argmax(dense.subarray(offset, offset + V));
    const s = argmax(this.out);
    const same = d === s;
    if (same) this.equal++;
    else if (this.misses.length < 20) this.misses.push({ position: this.positions, dense: d, sparse: s });
    this.positions++;
    return same;
  }

  /** Counts from a run compared elsewhere (greedy continuations): steps, equal steps, rows per step, head bytes read over them. */
  add(positions: number, equal: number, rows: readonly number[], bytes: number): void {
    this.positions += positions;
    this.equal += equal;
    this.bytes += bytes;
    for (const n of rows) {
      this.rows.push(n);
      if (n >= this.head.V) this.denseSteps++;
    }
  }

  result(): HeadAgreement {
    const r = percentiles(this.rows);
    const W = this.head.W;
    const headBytes = W.rows * W.rowBytes;
    return {
      positions: this.positions, equal: this.equal, share: this.positions > 0 ? this.equal / this.positions : NaN,
      rescored: r, dense_steps: this.denseSteps,
      head_bytes_ratio: this.rows.length > 0 ? this.bytes / this.rows.length / headBytes : NaN,
      ...(this.head.second && { first_stage: { blocks: this.head.screen.nb1, of: this.head.screen.nb, rows: percentiles(this.first) } }),
      misses: this.misses,
    };
  }
}

/** One line on the sparse head's agreement with dense (`perplexity`, `eval`). */
export function headAgreementLine(a: HeadAgreement, what = 'scored positions'): string {
  return `sparse head: greedy token equal to dense at ${a.equal} of ${a.positions} ${what} (${(100 * a.share).toFixed(3)}%), `
    + `rows computed exactly per step median ${a.rescored.median}, p99 ${a.rescored.p99}, dense fallbacks ${a.dense_steps}, `
    + `head bytes read ${(100 * a.head_bytes_ratio).toFixed(1)}% of dense`
    + (a.first_stage ? `; first stage ${a.first_stage.blocks} of ${a.first_stage.of} column blocks, rows kept median ${a.first_stage.rows.median}, p99 ${a.first_stage.rows.p99}` : '');
}
