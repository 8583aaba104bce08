// Where a sparsity policy's error comes from: run it over a text (every token sparsified, as
// perplexity runs it) and, at each layer, recompute the block's linears densely from the very
// inputs the sparse run gave them. The relative squared error Σ‖y − y_dense‖² / Σ‖y_dense‖² of
//   qkv — the q, k and v projections (before biases, norms and rotation),
//   o   — the attention output projection (after its post-norm, where the model has one),
//   mlp — the whole MLP block, down(act(gate·x) ⊙ up·x) (after its post-norm),
// says which layers and which linears the policy hurts, apart from the error the layers before
// pass on (that compounding is what perplexity and the agreement measures see).

import type { Kernels } from '../kernels/kernels.js';
import type { Model } from '../model/load.js';
import type { TapName } from '../model/forward.js';
import type { SparsityPolicy } from '../sparsity/policy.js';

export type ErrorSite = 'qkv' | 'o' | 'mlp';
export const ERROR_SITES: readonly ErrorSite[] = ['qkv', 'o', 'mlp'];

export interface ErrorAttribution {
  /** the text's name (a perplexity task) and the tokens run */
  readonly text: string;
  readonly tokens: number;
  /** per layer and site: the relative squared error of the sparse outputs against dense ones from the same inputs */
  readonly layers: Record<ErrorSite, number>[];
}

/** Relative output errors per layer and site of `policy` over the token ids (at most one cache's worth). */
export function attributeError(model: Model, policy: SparsityPolicy, ids: readonly number[], text: string): ErrorAttribution {
  const cfg = model.config;
  const k: Kernels = model.kernels;
  const W = model.weights.layers;
  const L = cfg.nLayers;
  const err = ERROR_SITES.map(() => new Float64Array(L));
  const ref = ERROR_SITES.map(() => new Float64Array(L));
  const saved = new Map<'attn_in' | 'attn_out' | 'ffn_in', Float32Array>();
  const scratch = new Map<number, Float32Array>();
  const buf = (n: number, slot: number): Float32Array => {
    const key = n * 8 + slot;
    let b = scratch.get(key);
    if (!b) scratch.set(key, (b = new Float32Array(n)));
    return b;
  };
  /** add ‖got − want‖² and ‖want‖² to the site's sums */
  const add = (site: number, l: number, got: Float32Array, want: Float32Array): void => {
    let e = 0, r = 0;
    for (let i = 0; i < want.length; i++) {
      const d = got[i]! - want[i]!;
      e += d * d;
      r += want[i]! * want[i]!;
    }
    err[site]![l]! += e;
    ref[site]![l]! += r;
  };

  const forward = model.createForward(32);
  forward.policy = policy;
  forward.sparsePrefill = true;
  forward.tap = (name: TapName, l: number, data: Float32Array, rows: number, width: number) => {
    const Ly = W[l]!;
    if (name === 'attn_in' || name === 'attn_out' || name === 'ffn_in') {
      saved.set(name, Float32Array.from(data.subarray(0, rows * width)));
      return;
    }
    const D = cfg.dim;
    if (name === 'q_lin' || name === 'k_lin' || name === 'v_lin') {
      const Wt = name === 'q_lin' ? Ly.wq : name === 'k_lin' ? Ly.wk : Ly.wv;
      const x = saved.get('attn_in')!;
      const want = buf(width, 0);
      for (let t = 0; t < rows; t++) {
        k.matvec(Wt, x.subarray(t * D, (t + 1) * D), want);
        add(0, l, data.subarray(t * width, (t + 1) * width), want);
      }
    } else if (name === 'attn_proj') {
      const att = saved.get('attn_out')!;
      const aw = att.length / rows;
      const want = buf(D, 0);
      for (let t = 0; t < rows; t++) {
        k.matvec(Ly.wo, att.subarray(t * aw, (t + 1) * aw), want);
        if (Ly.postAttnNorm) k.rmsnorm(want, 0, want, 0, Ly.postAttnNorm, D, cfg.normEps);
        add(1, l, data.subarray(t * D, (t + 1) * D), want);
      }
    } else if (name === 'ffn_out') {
      const x = saved.get('ffn_in')!;
      const F = cfg.ffnDim;
      const g = buf(F, 1), u = buf(F, 2), want = buf(D, 0);
      for (let t = 0; t < rows; t++) {
        const xt = x.subarray(t * D, (t + 1) * D);
        k.matvec(Ly.gate, xt, g);
        k.matvec(Ly.up, xt, u);
        k.activate(g, 0, F, cfg.act === 'gelu' ? 'gelu' : 'silu');
        k.mul(g, 0, u, 0, F);
        k.matvec(Ly.down, g, want);
        if (Ly.postFfnNorm) k.rmsnorm(want, 0, want, 0, Ly.postFfnNorm, D, cfg.normEps);
        add(2, l, data.subarray(t * D, (t + 1) * D), want);
      }
    }
  };
  const kv = model.createCache(ids.length + 1);
  try {
    forward.run(kv, ids, 0, 'none');
  } finally {
    forward.tap = undefined;
  }
  const layers = Array.from({ length: L }, (_, l) => {
    const row = {} as Record<ErrorSite, number>;
    ERROR_SITES.forEach((s, i) => { row[s] = ref[i]![l]! > 0 ? err[i]![l]! / ref[i]![l]! : 0; });
    return row;
  });
  return { text, tokens: ids.length, layers };
}
