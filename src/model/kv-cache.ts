// Keys and values of every past position, per layer: k[l] is [ctx][nKvHeads*headDim].
// `length` is how many positions are valid; rolling back (Sirius) just lowers it.

import { CtxError } from '../errors.js';
import type { ModelConfig } from './config.js';

export class KVCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  readonly kvDim: number;
  readonly kvDimV: number;
  length = 0;

  constructor(cfg: ModelConfig, readonly ctx: number) {
    this.kvDim = cfg.nKvHeads * cfg.headDim;
    this.kvDimV = cfg.nKvHeads * cfg.headDimV;
    this.k = Array.from({ length: cfg.nLayers }, () => new Float32Array(ctx * this.kvDim));
    this.v = Array.from({ length: cfg.nLayers }, () => new Float32Array(ctx * this.kvDimV));
  }

  /** Throws a clear error when `n` more positions from `pos` do not fit. */
  ensureRoom(pos: number, n: number): void {
    if (pos + n > this.ctx) {
      throw new CtxError(`context full: ${pos + n} tokens needed but the context holds ${this.ctx} (raise --ctx)`);
    }
  }

  /** Forget everything from position `n` on. */
  truncate(n: number): void {
    this.length = Math.min(this.length, Math.max(0, n));
  }

  get bytes(): number {
    return this.k.reduce((a, t) => a + t.byteLength, 0) + this.v.reduce((a, t) => a + t.byteLength, 0);
  }
}
