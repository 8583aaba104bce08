#!/usr/bin/env node
// Decode speed of the sparse output layer on real text, against the dense head, in one process:
// greedy continuations of real prompts (the contexts of HellaSwag validation tasks), dense and
// --sparse-head taking turns prompt by prompt on the same loaded model. `ctxsparse bench` feeds
// random token ids (llama-bench's tg), whose next-token distributions are flat, so many rows fall
// within their margins there; this is the speed a user generating text sees. It also checks that
// both heads produced the same tokens.
// With --sparsity P the sparse side also decodes with that layer-sparsity profile (the issue's
// "with a 50% profile" figure).
// Usage: node bench/sparse-head-text.mjs [-m MODEL] [-t 2] [-p 10] [-n 64] [-r 2] [--sparsity P] [--first-stage B] [--json]   (after `npm run build`)
import { Command } from 'commander';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { buildSparseHead } from '../dist/src/sparsity/head-model.js';
import { argmaxIn } from '../dist/src/generate/sampler.js';
import { greedyPrompts } from '../dist/src/eval/tasks.js';
import { encodeEval } from '../dist/src/eval/choice.js';
import { sparsityPolicy } from '../dist/src/cli/common.js';
import { densePolicy } from '../dist/src/sparsity/policy.js';

const o = new Command()
  .name('bench/sparse-head-text.mjs')
  .option('-m, --model <name>', 'catalog name or .gguf path', 'smollm2-135m-instruct')
  .option('-t, --threads <n>', 'kernel threads', '2')
  .option('-p, --prompts <n>', 'prompts (HellaSwag validation contexts, in file order)', '10')
  .option('-n, --tokens <n>', 'greedy tokens generated per prompt', '64')
  .option('-r, --rounds <n>', 'passes over the prompts (each prompt: dense then sparse, or the reverse on odd rounds)', '2')
  .option('--sparsity <file>', 'a layer-sparsity profile used with the sparse head (decode steps only, as generate does); continuations then differ from dense by design')
  .option('--first-stage <blocks>', 'the screen\'s first stage in 64-column blocks (default: chosen at load; all of them: one stage)')
  .option('--json', 'one JSON object on stdout')
  .parse()
  .opts();
const N = Number(o.tokens);
const model = loadModel(resolveModel(o.model), { threads: Number(o.threads) });
const head = buildSparseHead(model, o.firstStage !== undefined ? { firstStage: Number(o.firstStage) } : {});
const profile = o.sparsity ? sparsityPolicy(o.sparsity, model) : null;
head.record = true;
// the prompts `eval --greedy-prompts` uses, tokenized as it does
const prompts = greedyPrompts(Number(o.prompts)).prompts.map((p) => encodeEval(model.tokenizer, p));
const forward = model.createForward(32);
const kv = model.createCache(Math.max(...prompts.map((p) => p.length)) + N + 8);

/** Greedy continuation of a prompt: the tokens and the decode seconds (the prompt is not timed). */
function decode(ids, sparse) {
  kv.truncate(0);
  forward.outputHead = null;
  let logits = forward.run(kv, ids, 0, 'last');
  forward.outputHead = sparse ? head : null;
  forward.policy = sparse && profile ? profile.policy : densePolicy;
  const out = [];
  const t0 = performance.now();
  let tok = argmaxIn(logits, forward.headSupport);
  for (let i = 0; i < N; i++) {
    out.push(tok);
    logits = forward.run(kv, [tok], ids.length + i, 'last');
    tok = argmaxIn(logits, forward.headSupport);
  }
  forward.outputHead = null;
  forward.policy = densePolicy;
  return { tokens: out, seconds: (performance.now() - t0) / 1000 };
}

decode(prompts[0], false); // warm-up (and the first use of the screen)
decode(prompts[0], true);
head.stats.rescored.length = 0;
const time = { dense: 0, sparse: 0 };
let steps = 0, same = 0, identical = 0, runs = 0;
for (let r = 0; r < Number(o.rounds); r++) {
  for (const ids of prompts) {
    const order = r % 2 === 0 ? [false, true] : [true, false];
    const res = {};
    for (const sparse of order) {
      const d = decode(ids, sparse);
      time[sparse ? 'sparse' : 'dense'] += d.seconds;
      res[sparse ? 'sparse' : 'dense'] = d.tokens;
    }
    runs++;
    steps += N;
    let k = 0;
    while (k < N && res.dense[k] === res.sparse[k]) k++;
    same += k;
    if (k === N) identical++;
  }
}
const rs = [...head.stats.rescored].sort((a, b) => a - b);
const at = (q) => rs[Math.min(rs.length - 1, Math.floor(q * (rs.length - 1) + 0.5))];
const result = {
  model: o.model, threads: Number(o.threads), ...(o.sparsity && { sparsity: o.sparsity }), prompts: prompts.length, tokens: N, rounds: Number(o.rounds),
  dense_tok_s: +(steps / time.dense).toFixed(2), sparse_tok_s: +(steps / time.sparse).toFixed(2),
  speedup: +(time.dense / time.sparse).toFixed(3),
  identical_runs: `${identical}/${runs}`, equal_prefix_share: +(same / steps).toFixed(4),
  rescored: { median: at(0.5), p99: at(0.99) }, dense_fallbacks: head.stats.dense,
};
if (o.json) console.log(JSON.stringify(result));
else {
  console.log(`${result.model}, ${result.threads} thread(s), ${result.prompts} prompts × ${N} greedy tokens × ${result.rounds} rounds (HellaSwag contexts)`);
  console.log(`dense head ${result.dense_tok_s} tok/s, sparse head${o.sparsity ? ' + ' + o.sparsity : ''} ${result.sparse_tok_s} tok/s: ×${result.speedup}`);
  console.log(`identical continuations ${result.identical_runs}; rows rescored median ${result.rescored.median}, p99 ${result.rescored.p99}; dense fallbacks ${result.dense_fallbacks}`);
}
model.kernels.close?.();
