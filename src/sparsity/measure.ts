// What every sparsity method shares: counters of the density it actually realized per layer and
// site (kept / offered, over every token it was asked about), and the selection helper that keeps
// the channels whose score passes a threshold.

import type { ElementwiseOps } from '../kernels/kernels.js';
import { refOps } from '../kernels/ref/ops.js';
import type { ModelConfig } from '../model/config.js';
import type { LinearSite, Selection, SparsityPolicy } from './policy.js';

/** A place a method sparsifies: the input of a group of linears, or the MLP neurons. */
export type Site = LinearSite | 'ffn_neurons';
export const SITES: readonly Site[] = ['attn_in', 'attn_q', 'attn_out', 'ffn_in', 'ffn_down', 'ffn_neurons'];

export interface RealizedDensity {
  /** weights read in q, k, v, o, gate, up, down over weights there, parameter-weighted (1 = dense) */
  readonly linear: number;
  /** kept / offered per site over all layers (only the sites the method sparsifies) */
  readonly sites: Partial<Record<Site, number>>;
  /** the same per layer */
  readonly layers: Partial<Record<Site, number>>[];
  /** tokens (rows) the policy was asked about at the first site it counts */
  readonly tokens: number;
}

/** Parameters of each linear of one layer. */
export function linearParams(cfg: ModelConfig): { q: number; k: number; v: number; o: number; gate: number; up: number; down: number } {
  const { dim, ffnDim, nHeads, nKvHeads, headDim, headDimV } = cfg;
  return {
    q: dim * nHeads * headDim, k: dim * nKvHeads * headDim, v: dim * nKvHeads * headDimV,
    o: nHeads * headDimV * dim, gate: dim * ffnDim, up: dim * ffnDim, down: ffnDim * dim,
  };
}

/** Indices j with score_j = |x_j|·(scale_j or 1) > t, or null when that is every channel (the reference selection). */
export function keepAbove(x: Float32Array, t: number, scale?: Float32Array, ops: Pick<ElementwiseOps, 'keepAbove'> = refOps,
  tmp: Int32Array = new Int32Array(x.length)): Selection | null {
  const k = ops.keepAbove(x, t, scale ?? null, tmp);
  // an array of exactly the kept ones: tmp is scratch (a policy reuses it call after call)
  return k === x.length ? null : { idx: tmp.slice(0, k), n: k };
}

/**
 * The base of the methods: counts, per layer and site, how many elements were offered and kept.
 * Subclasses answer the policy questions and call `counted` with their answer.
 */
export abstract class MeasuredPolicy implements SparsityPolicy {
  abstract readonly name: string;
  private readonly kept = new Map<Site, Float64Array>();
  private readonly offered = new Map<Site, Float64Array>();
  private readonly rows = new Map<Site, Float64Array>();

  /** Where selections are computed: the model's kernels once `selectWith` is called (SIMD in the WebAssembly ones). */
  protected ops: Pick<ElementwiseOps, 'keepAbove'> = refOps;

  constructor(readonly cfg: ModelConfig) {}

  /** Compute selections with these kernels (the same ones the forward pass runs on). */
  selectWith(ops: Pick<ElementwiseOps, 'keepAbove'>): this {
    this.ops = ops;
    return this;
  }

  // Selections are views of an arena, filled front to back: a decode step asks for a hundred or
  // more, and a fresh array for each (allocation, then a copy) cost more than the selection
  // itself. A full arena is replaced, never reused, so a selection stays valid as long as it is held.
  private arena = new Int32Array(0);
  private used = 0;
  /** keepAbove with this policy's kernels. */
  protected keep(x: Float32Array, t: number, scale?: Float32Array): Selection | null {
    const n = x.length;
    if (this.used + n > this.arena.length) {
      this.arena = new Int32Array(Math.max(1 << 16, 4 * n));
      this.used = 0;
    }
    const idx = this.arena.subarray(this.used, this.used + n);
    const k = this.ops.keepAbove(x, t, scale ?? null, idx);
    if (k === n) return null;
    this.used += k;
    return { idx: idx.subarray(0, k), n: k };
  }

  /** Record a selection (null = all `width` kept) and return it. */
  protected counted(layer: number, site: Site, sel: Selection | null, width: number): Selection | null {
    let k = this.kept.get(site);
    if (!k) {
      const L = this.cfg.nLayers;
      this.kept.set(site, (k = new Float64Array(L)));
      this.offered.set(site, new Float64Array(L));
      this.rows.set(site, new Float64Array(L));
    }
    k[layer]! += sel ? sel.n : width;
    this.offered.get(site)![layer]! += width;
    this.rows.get(site)![layer]! += 1;
    return sel;
  }

  abstract inputChannels(layer: number, site: LinearSite, x: Float32Array): Selection | null;
  neurons(_layer: number, _gateAct: Float32Array): Selection | null {
    return null;
  }
  heads(_layer: number, _x: Float32Array): Selection | null {
    return null;
  }

  resetCounts(): void {
    this.kept.clear();
    this.offered.clear();
    this.rows.clear();
  }

  /** The density realized so far (since construction or resetCounts). */
  realized(): RealizedDensity {
    const L = this.cfg.nLayers;
    const d = (site: Site, l: number): number | undefined => {
      const o = this.offered.get(site)?.[l];
      return o ? this.kept.get(site)![l]! / o : undefined;
    };
    const layers: Partial<Record<Site, number>>[] = [];
    const sites: Partial<Record<Site, number>> = {};
    for (const site of SITES) {
      const o = this.offered.get(site);
      if (!o) continue;
      const k = this.kept.get(site)!;
      const so = o.reduce((a, b) => a + b, 0);
      if (so > 0) sites[site] = k.reduce((a, b) => a + b, 0) / so;
    }
    const p = linearParams(this.cfg);
    let read = 0;
    let all = 0;
    for (let l = 0; l < L; l++) {
      const row: Partial<Record<Site, number>> = {};
      for (const site of SITES) {
        const v = d(site, l);
        if (v !== undefined) row[site] = v;
      }
      layers.push(row);
      const qkv = d('attn_in', l) ?? 1;
      const neurons = d('ffn_neurons', l) ?? 1;
      const ffnIn = d('ffn_in', l) ?? 1;
      read += p.q * (d('attn_q', l) ?? qkv) + (p.k + p.v) * qkv + p.o * (d('attn_out', l) ?? 1)
        + p.gate * ffnIn + p.up * ffnIn * neurons + p.down * (d('ffn_down', l) ?? neurons);
      all += p.q + p.k + p.v + p.o + p.gate + p.up + p.down;
    }
    let tokens = 0;
    for (const r of this.rows.values()) {
      tokens = r[0]!;
      break;
    }
    return { linear: all > 0 ? read / all : 1, sites, layers, tokens };
  }
}
