// `ctxsparse perplexity`: llama.cpp-compatible perplexity of a text file.

import type { Command } from 'commander';
import { HeadAgreementMeter, headAgreementLine } from '../eval/head-agreement.js';
import { perplexity } from '../eval/perplexity.js';
import { addModelOptions, addSparseHeadOptions, addSparsityOption, int, openModel, peakRssMB, progressBar, readTextFile, sparseHeadFor, sparsityPolicy, type SparseHeadFlags } from './common.js';

interface PerplexityFlags extends SparseHeadFlags {
  model: string;
  tokenizer?: string;
  file: string;
  ctx: number;
  chunks?: number;
  batch: number;
  json?: boolean;
  sparsity?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('perplexity')
    .description("perplexity of a text file, computed as llama.cpp's perplexity tool does (chunks of --ctx tokens, second half of each scored)")
    .requiredOption('-f, --file <path>', 'the text file (e.g. ../shared/eval/wikitext-2-raw/wiki.test.raw)')
    .option('-c, --ctx <n>', 'tokens per chunk', int('--ctx', 4), 512)
    .option('--chunks <k>', 'evaluate at most k chunks (default: all)', int('--chunks', 1))
    .option('--batch <n>', 'tokens per forward batch', int('--batch', 1), 64)
    .option('--json', 'print {"ppl", "chunks", "ctx", "tokens", ...}');
  addModelOptions(cmd);
  addSparsityOption(cmd);
  addSparseHeadOptions(cmd, 'opt-in');
  cmd.addHelpText('after', '\nWith --sparse-head the perplexity stays the dense output layer\'s; the sparse head runs beside it on every\n'
    + 'scored position and its agreement is reported (greedy token equal to dense, rows computed exactly, bytes read).');
  cmd.action((o: PerplexityFlags) => {
    const text = readTextFile(o.file, '--file');
    const t0 = performance.now();
    const model = openModel(o);
    const sparse = sparsityPolicy(o.sparsity, model);
    const head = sparseHeadFor(o, model);
    // agreement is measured on every position: none served by the dense head without screening
    if (head) head.adaptive = false;
    const meter = head ? new HeadAgreementMeter(head) : undefined;
    const loadSeconds = (performance.now() - t0) / 1000;
    let bar: ReturnType<typeof progressBar> | undefined;
    const r = perplexity(model, text, {
      ctx: o.ctx, batch: o.batch, ...(o.chunks !== undefined && { chunks: o.chunks }), ...(sparse && { policy: sparse.policy }), ...(meter && { headMeter: meter }),
      onChunk: (done, total, ppl) => {
        bar ??= progressBar('perplexity', total);
        bar.update(done, `ppl ${ppl.toFixed(4)}`);
        // logs and pipes get a line per chunk, as llama-perplexity prints them (stdout stays JSON-only)
        if (!process.stderr.isTTY) process.stderr.write(`[${done}/${total}] ${ppl.toFixed(4)}\n`);
      },
    });
    bar?.stop();
    const seconds = (performance.now() - t0) / 1000;
    const agreement = meter?.result();
    if (o.json) {
      process.stdout.write(JSON.stringify({
        ppl: r.ppl, chunks: r.chunks, ctx: r.ctx, tokens: r.tokens,
        ppl_stderr: r.pplStderr, scored: r.scored, seconds: Math.round(seconds * 10) / 10,
        load_seconds: Math.round(loadSeconds * 100) / 100, peak_rss_mb: peakRssMB(),
        ...(sparse && {
          sparsity: { profile: sparse.file, method: sparse.profile.method, target: sparse.profile.sparsity, allocation: sparse.profile.allocation },
          density: sparse.policy.realized(),
        }),
        ...(agreement && head && { sparse_head: { ...agreement, safety: head.safety, screen_bytes: head.screenBytes } }),
      }) + '\n');
      return;
    }
    const dens = sparse ? `, ${sparse.profile.method} ${sparse.profile.sparsity}: realized density ${sparse.policy.realized().linear.toFixed(3)} of the linears' weights` : '';
    if (agreement) process.stdout.write(headAgreementLine(agreement) + '\n');
    process.stdout.write(`perplexity ${r.ppl.toFixed(4)} ± ${r.pplStderr.toFixed(4)} over ${r.chunks} chunks of ${r.ctx} (${r.scored} tokens scored) in ${seconds.toFixed(1)}s, peak RSS ${peakRssMB()} MB${dens}\n`);
  });
}
