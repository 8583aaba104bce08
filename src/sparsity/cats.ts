// CATS (contextually-aware thresholding): in each gated MLP, keep neuron i only when
// |act(gate_i)| > t (SiLU, or GELU for Gemma: the forward pass hands over the activation), one
// threshold per layer at the target quantile of the calibration distribution. The gate is
// computed densely; up is computed for the kept rows only and down reads only the kept inputs.

import type { ModelConfig } from '../model/config.js';
import { MeasuredPolicy } from './measure.js';
import type { LinearSite, Selection } from './policy.js';

export class CatsPolicy extends MeasuredPolicy {
  readonly name: string = 'cats';

  /** thresholds[l]: undefined leaves layer l dense */
  constructor(cfg: ModelConfig, readonly thresholds: (number | undefined)[]) {
    super(cfg);
  }

  inputChannels(_layer: number, _site: LinearSite, _x: Float32Array): Selection | null {
    return null;
  }

  override neurons(layer: number, gateAct: Float32Array): Selection | null {
    const t = this.thresholds[layer];
    return this.counted(layer, 'ffn_neurons', t === undefined ? null : this.keep(gateAct, t), gateAct.length);
  }
}
