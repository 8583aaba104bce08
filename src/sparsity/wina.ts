// WINA (weight-informed neuron activation): like TEAL, but the score of input channel j is
// |x_j|·‖W[:,j]‖₂, the channel's activation times the norm of the weights it multiplies. For a
// site whose linears share the input (q/k/v, gate/up) the norm is that of the concatenated matrix
// (the channel's column across every output it feeds). Thresholds are quantiles of the score on
// the calibration data; levels from TEAL's greedy allocation or uniform.

import type { Model } from '../model/load.js';
import { columnNorms, siteLinears } from './linears.js';
import { MeasuredPolicy } from './measure.js';
import type { LinearSite, Selection } from './policy.js';
import type { SiteThresholds } from './teal.js';

export type SiteNorms = Partial<Record<LinearSite, Float32Array>>[];

/** Column norms of every site's linears, per layer (dequantized once). */
export function winaNorms(model: Model, sites: readonly LinearSite[]): SiteNorms {
  const out: SiteNorms = [];
  for (let l = 0; l < model.config.nLayers; l++) {
    const row: Partial<Record<LinearSite, Float32Array>> = {};
    for (const s of sites) row[s] = columnNorms(siteLinears(model, l, s));
    out.push(row);
  }
  return out;
}

export class WinaPolicy extends MeasuredPolicy {
  readonly name: string = 'wina';
  readonly selectsNeurons: boolean = false;

  constructor(model: Model, readonly thresholds: SiteThresholds, readonly norms: SiteNorms = winaNorms(model, ['attn_in', 'attn_out', 'ffn_in', 'ffn_down'])) {
    super(model.config);
  }

  inputChannels(layer: number, site: LinearSite, x: Float32Array): Selection | null {
    if (site === 'attn_q') return null;
    const t = this.thresholds[layer]?.[site];
    return this.counted(layer, site, t === undefined ? null : this.keep(x, t, this.norms[layer]![site]!), x.length);
  }
}
