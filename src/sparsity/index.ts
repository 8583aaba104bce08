// The training-free sparsity methods and their profiles: `fromProfile` turns a calibrated profile
// into the method's policy for a loaded model.

import type { Model } from '../model/load.js';
import { CatsPolicy } from './cats.js';
import { ChessPolicy } from './chess.js';
import type { MeasuredPolicy } from './measure.js';
import type { Profile } from './profile.js';
import { TEAL_SITES, TealPolicy, thresholdsOf } from './teal.js';
import { WinaPolicy } from './wina.js';

export { densePolicy, type LinearSite, type Selection, type SparsityPolicy } from './policy.js';
export { MeasuredPolicy, keepAbove, linearParams, SITES, type RealizedDensity, type Site } from './measure.js';
export { TealPolicy, TEAL_SITES, thresholdsOf, type SiteThresholds } from './teal.js';
export { WinaPolicy, winaNorms, type SiteNorms } from './wina.js';
export { CatsPolicy } from './cats.js';
export { ChessPolicy, type ChessLayer } from './chess.js';
export { Histogram, NBINS } from './histogram.js';
export {
  METHODS, METHOD_SITES, checkProfileModel, loadProfile, modelName, modelSha256, profileJSON, saveProfile, validateProfile,
  type Allocation, type LayerSettings, type Method, type Profile, type SiteSetting,
} from './profile.js';

/** The policy a profile describes, for `model` (checked against the profile by checkProfileModel). */
export function fromProfile(profile: Profile, model: Model): MeasuredPolicy {
  return policyOf(profile, model).selectWith(model.kernels);
}

function policyOf(profile: Profile, model: Model): MeasuredPolicy {
  const cfg = model.config;
  switch (profile.method) {
    case 'teal':
      return new TealPolicy(cfg, thresholdsOf(profile.layers, TEAL_SITES));
    case 'wina':
      return new WinaPolicy(model, thresholdsOf(profile.layers, TEAL_SITES));
    case 'cats':
      return new CatsPolicy(cfg, profile.layers.map((e) => (e.ffn_neurons && e.ffn_neurons.level > 0 ? e.ffn_neurons.threshold : undefined)));
    case 'chess':
      return new ChessPolicy(cfg, profile.layers.map((e) => {
        const q = e.attn_q;
        const o = e.attn_out;
        const n = e.ffn_neurons;
        return {
          ...(q && q.level > 0 && { q: q.threshold }),
          ...(o && o.level > 0 && { o: o.threshold }),
          ...(n && n.level > 0 && { mlp: { threshold: n.threshold, upMean: Float32Array.from(n.channel_scale ?? []) } }),
        };
      }));
  }
}
