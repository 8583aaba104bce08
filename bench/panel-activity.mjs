#!/usr/bin/env node
// Whether kept channels could come in whole panels: the transposed copies' kernel pays a block's
// scaling whenever one of its 32 channels is kept, so a skip pays fully only for panels with none.
// Decodes real prompts (the `eval --greedy-prompts` contexts) with a profile, records every decode
// step's selection at every layer and site, and reports the share of 32-channel panels with a kept
// channel: as the channels are stored, and with them sorted by how often they were kept (counted on
// the first half of the tokens, measured on the second: PowerInfer's hot/cold ordering, which a
// permuted copy could use).
// Usage: node bench/panel-activity.mjs MODEL PROFILE [PROMPTS=16] [TOKENS=32]   (after `npm run build`)
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { sparsityPolicy } from '../dist/src/cli/common.js';
import { greedyPrompts } from '../dist/src/eval/tasks.js';
import { Session } from '../dist/src/generate/session.js';
const [name, prof, np = '16', nt = '32'] = process.argv.slice(2);
if (!name || !prof || !(Number(np) > 0) || !(Number(nt) > 1)) {
  console.error('usage: node bench/panel-activity.mjs MODEL PROFILE [PROMPTS] [TOKENS]');
  process.exit(1);
}
const model = loadModel(resolveModel(name), { threads: 2 });
const sp = sparsityPolicy(prof, model);
const inner = sp.policy; const recs = new Map(); let on = false;
const rec = (key, s, w) => { if (!on || !s) return; let a = recs.get(key); if (!a) recs.set(key, (a = { w, sets: [] })); a.sets.push(Array.from(s.idx.subarray(0, s.n))); };
const policy = { name: inner.name, selectsNeurons: inner.selectsNeurons,
  inputChannels(l, site, x) { const s = inner.inputChannels(l, site, x); rec(`${l}/${site}`, s, x.length); return s; },
  neurons(l, g) { const s = inner.neurons(l, g); rec(`${l}/neurons`, s, g.length); return s; }, heads: (l, x) => inner.heads(l, x) };
const { prompts } = greedyPrompts(Number(np));
for (const text of prompts) {
  const session = new Session(model, { policy }); const ids = model.tokenizer.encode(text, { parseSpecial: false });
  let i = 0; on = false;
  for (const _ of session.generate(ids, { maxTokens: Number(nt), temperature: 0 })) { on = true; if (++i >= Number(nt)) break; }
  on = false;
}
const bySite = new Map();
for (const [key, { w, sets }] of recs) {
  const site = key.split('/')[1];
  // split the tokens: frequencies from the first half, panels counted on the second
  const half = sets.length >> 1;
  const freq = new Float64Array(w);
  for (const s of sets.slice(0, half)) for (const c of s) freq[c]++;
  const order = Array.from({ length: w }, (_, i) => i).sort((a, b) => freq[b] - freq[a]);
  const pos = new Int32Array(w); order.forEach((c, i) => (pos[c] = i));
  const nP = w / 32;
  let density = 0, active = 0, activeSorted = 0, n = 0;
  for (const s of sets.slice(half)) {
    const a = new Uint8Array(nP), b = new Uint8Array(nP);
    for (const c of s) { a[c >> 5] = 1; b[pos[c] >> 5] = 1; }
    density += s.length / w; active += a.reduce((x, y) => x + y, 0) / nP; activeSorted += b.reduce((x, y) => x + y, 0) / nP; n++;
  }
  const r = bySite.get(site) ?? { density: 0, active: 0, activeSorted: 0, k: 0 };
  r.density += density / n; r.active += active / n; r.activeSorted += activeSorted / n; r.k++;
  bySite.set(site, r);
}
for (const [site, r] of bySite) console.log(`${name} ${site}: density ${(100 * r.density / r.k).toFixed(1)}%, active panels ${(100 * r.active / r.k).toFixed(1)}% as stored, ${(100 * r.activeSorted / r.k).toFixed(1)}% with channels sorted by keep frequency (held-out tokens)`);
process.exit(0);
