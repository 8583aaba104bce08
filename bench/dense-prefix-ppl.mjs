// Perplexity with a sparsity profile when the first K positions of every chunk run dense (K = 0:
// every token sparse, as `ctxsparse perplexity --sparsity` and the sweeps measure it): how much of
// a method's cost comes from sparsifying the first tokens (the attention sink) that every later
// token attends to. Chunks of 512 of WikiText-2 test, the second half of each scored (llama.cpp's
// convention, src/eval/perplexity.ts).
// Usage: node bench/dense-prefix-ppl.mjs MODEL PROFILE.json|dense [K,K…=0,1] [CHUNKS=10] [THREADS=2]   (after `npm run build`)
import { readFileSync } from 'node:fs';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { logProb } from '../dist/src/eval/perplexity.js';
import { fromProfile } from '../dist/src/sparsity/index.js';
import { loadProfile } from '../dist/src/sparsity/profile.js';
import { densePolicy } from '../dist/src/sparsity/policy.js';

const [name, prof, ks = '0,1', nChunks = '10', threads = '2'] = process.argv.slice(2);
if (!name || !prof) { console.error('usage: node bench/dense-prefix-ppl.mjs MODEL PROFILE.json|dense [K,K…] [CHUNKS] [THREADS]'); process.exit(1); }
const model = loadModel(resolveModel(name), { threads: Number(threads) });
const sparse = prof === 'dense' ? densePolicy : fromProfile(loadProfile(prof), model);
const text = readFileSync(new URL('../../shared/eval/wikitext-2-raw/wiki.test.raw', import.meta.url), 'utf8');
const tok = model.tokenizer;
const ids = tok.encode(text, { parseSpecial: false });
const bos = tok.addBosDefault ? tok.bos : undefined;
const ctx = 512, first = ctx / 2, B = 32, V = model.config.vocabSize;
const fwd = model.createForward(B);
const kv = model.createCache(ctx);
for (const k of ks.split(',').map(Number)) {
  let nll = 0, n = 0;
  for (let c = 0; c < Number(nChunks); c++) {
    const ch = ids.slice(c * ctx, (c + 1) * ctx);
    if (bos !== undefined) ch[0] = bos;
    kv.truncate(0);
    if (k > 0) { fwd.policy = densePolicy; fwd.run(kv, ch.slice(0, k), 0, 'none'); }
    fwd.policy = sparse;
    fwd.run(kv, ch.slice(k, first), k, 'none');
    for (let b = first; b < ctx; b += B) {
      const e = Math.min(ctx, b + B);
      const L = fwd.run(kv, ch.slice(b, e), b, 'all');
      for (let j = b; j < Math.min(e, ctx - 1); j++) { nll -= logProb(L, (j - b) * V, V, ch[j + 1]); n++; }
    }
  }
  console.log(`${name} ${prof === 'dense' ? 'dense' : prof.split('/').pop()}: first ${k} positions dense, ppl ${Math.exp(nll / n).toFixed(4)} (${nChunks} chunks)`);
}
process.exit(0);
