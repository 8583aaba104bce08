// CHESS: channel-wise thresholds in the MLP and selective sparsification of attention.
// - MLP: neuron i is kept when |act(gate_i)| > t_i = T / E|up_i|, i.e. when |act(gate_i)|·E|up_i|
//   > T, with E|up_i| the mean |up_i| on the calibration data and T per layer at the target
//   quantile of that score; up and down then touch only the kept neurons (as CATS).
// - Attention: only the inputs of q and o are thinned (|x_j| > t, per layer, as TEAL); k and v
//   stay dense so the KV cache is exact.

import type { ModelConfig } from '../model/config.js';
import { MeasuredPolicy } from './measure.js';
import type { LinearSite, Selection } from './policy.js';

export interface ChessLayer {
  /** thresholds on |x| at q's input and o's input (undefined = dense) */
  readonly q?: number;
  readonly o?: number;
  /** T and E|up_i| (undefined = dense MLP) */
  readonly mlp?: { readonly threshold: number; readonly upMean: Float32Array };
}

export class ChessPolicy extends MeasuredPolicy {
  readonly name: string = 'chess';

  constructor(cfg: ModelConfig, readonly layers: ChessLayer[]) {
    super(cfg);
  }

  inputChannels(layer: number, site: LinearSite, x: Float32Array): Selection | null {
    const t = site === 'attn_q' ? this.layers[layer]?.q : site === 'attn_out' ? this.layers[layer]?.o : undefined;
    if (site !== 'attn_q' && site !== 'attn_out') return null;
    return this.counted(layer, site, t === undefined ? null : this.keep(x, t), x.length);
  }

  override neurons(layer: number, gateAct: Float32Array): Selection | null {
    const m = this.layers[layer]?.mlp;
    return this.counted(layer, 'ffn_neurons', m ? this.keep(gateAct, m.threshold, m.upMean) : null, gateAct.length);
  }
}
