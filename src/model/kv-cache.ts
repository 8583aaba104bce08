// Keys and values of every past position, per layer: k[l] is [ctx][nKvHeads*headDim].
// `length` is how many positions are valid; rolling back (Sirius) just lowers it.
//
// With an allocator (the wasm kernels' `alloc`), the arrays are views of the kernels' memory, so
// attention reads the cache in place. That memory is never freed: every cache made this way stays
// allocated for the life of the kernel instance (and counts against its 4 GiB limit), even after
// the KVCache is dropped. Fine for one or a few sessions per model; a free list would be next.

import { CtxError } from '../errors.js';
import type { ModelConfig } from './config.js';

export class KVCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  readonly kvDim: number;
  readonly kvDimV: number;
  length = 0;

  /** `alloc`: where to place the arrays (bytes → a zero-filled view); absent = ordinary Float32Arrays. */
  constructor(cfg: ModelConfig, readonly ctx: number, alloc?: (bytes: number) => Uint8Array) {
    this.kvDim = cfg.nKvHeads * cfg.headDim;
    this.kvDimV = cfg.nKvHeads * cfg.headDimV;
    const make = (n: number): Float32Array => (alloc ? f32On(alloc, n) : new Float32Array(n));
    this.k = Array.from({ length: cfg.nLayers }, () => make(ctx * this.kvDim));
    this.v = Array.from({ length: cfg.nLayers }, () => make(ctx * this.kvDimV));
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

/** A Float32Array of n elements on memory from `alloc`, 4-byte aligned. */
export function f32On(alloc: (bytes: number) => Uint8Array, n: number): Float32Array {
  let u = alloc(n * 4);
  if (u.byteOffset % 4 !== 0) u = alloc(n * 4 + 3); // an allocator without alignment: room to align
  return new Float32Array(u.buffer, u.byteOffset + ((4 - (u.byteOffset % 4)) % 4), n);
}
