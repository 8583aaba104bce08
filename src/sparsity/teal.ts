// TEAL (training-free activation sparsity): at the input of every linear, drop the channels with
// |x_j| ≤ t, one threshold per layer and input (q/k/v share one, gate/up share one, o and down
// have their own), calibrated to a per-site level; the levels come from TEAL's greedy allocation
// or are uniform. Every token is sparsified, prompt tokens included.

import type { ModelConfig } from '../model/config.js';
import { MeasuredPolicy } from './measure.js';
import type { LinearSite, Selection } from './policy.js';
import type { LayerSettings } from './profile.js';

export const TEAL_SITES = ['attn_in', 'attn_out', 'ffn_in', 'ffn_down'] as const;

/** Per layer, per input site: the threshold, or undefined for a site left dense. */
export type SiteThresholds = Partial<Record<LinearSite, number>>[];

/** Thresholds of the sites whose level is above 0 (level 0 = dense, exactly). */
export function thresholdsOf(layers: readonly LayerSettings[], sites: readonly LinearSite[]): SiteThresholds {
  return layers.map((e) => {
    const t: Partial<Record<LinearSite, number>> = {};
    for (const s of sites) {
      const v = e[s];
      if (v && v.level > 0) t[s] = v.threshold;
    }
    return t;
  });
}

export class TealPolicy extends MeasuredPolicy {
  readonly name: string = 'teal';
  readonly selectsNeurons: boolean = false;

  constructor(cfg: ModelConfig, readonly thresholds: SiteThresholds) {
    super(cfg);
  }

  inputChannels(layer: number, site: LinearSite, x: Float32Array): Selection | null {
    if (site === 'attn_q') return null;
    const t = this.thresholds[layer]?.[site];
    return this.counted(layer, site, t === undefined ? null : this.keep(x, t), x.length);
  }
}
