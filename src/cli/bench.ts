// `ctxsparse bench`: prompt-processing and generation speed, in the manner of llama.cpp's llama-bench.

import type { Command } from 'commander';
import { BENCH_DEFAULTS, bench, defaultThreads, type BenchReport } from '../bench/bench.js';
import { CtxError } from '../errors.js';
import { DEFAULT_MODEL, looksLikePath, resolveModel } from '../models/catalog.js';
import type { Model } from '../model/load.js';
import type { MeasuredPolicy } from '../sparsity/measure.js';
import { fromProfile } from '../sparsity/index.js';
import { checkProfileModel, loadProfile } from '../sparsity/profile.js';
import { addSparseHeadOptions, int, progressBar, sparseHeadFor, type SparseHeadFlags } from './common.js';
import type { SparseHead } from '../sparsity/head.js';
import { percentiles } from '../sparsity/head.js';

interface BenchFlags extends SparseHeadFlags {
  model: string;
  tokenizer?: string;
  nPrompt: number;
  nGen: number;
  repetitions: number;
  threads?: number[];
  batch: number;
  seed: number;
  json?: boolean;
  sparsity?: string;
}

/** A parser for a comma list of integers ≥ min, naming the flag when it fails. */
export function intList(flag: string, min = 1): (s: string) => number[] {
  return (s: string) => {
    const parts = s.split(',').map((x) => x.trim());
    const one = int(flag, min);
    try {
      if (parts.length === 0 || parts.some((x) => x === '')) throw new CtxError('');
      return parts.map((x) => one(x));
    } catch {
      throw new CtxError(`${flag}: expected a comma list of integers ≥ ${min}, got "${s}"`);
    }
  };
}

export function register(program: Command): void {
  const cmd = program
    .command('bench')
    .description("prompt-processing (pp) and text-generation (tg) speed in tokens/s, measured as llama.cpp's llama-bench does")
    .option('-m, --model <name|path>', 'catalog name or path to a .gguf (or llama2.c .bin) file', DEFAULT_MODEL)
    .option('--tokenizer <path>', 'tokenizer for a llama2.c .bin checkpoint (default: tok512.bin beside it)')
    .option('-p, --n-prompt <n>', 'pp test: random tokens fed in one forward call from an empty cache (0 = skip)', int('--n-prompt', 0), BENCH_DEFAULTS.nPrompt)
    .option('-n, --n-gen <n>', 'tg test: single-token steps from an empty cache (0 = skip)', int('--n-gen', 0), BENCH_DEFAULTS.nGen)
    .option('-r, --repetitions <n>', 'timed runs per test, after one untimed warm-up run', int('--repetitions', 1), BENCH_DEFAULTS.reps)
    .option('-t, --threads <list>', `comma list of thread counts, the model loaded once for each (default: ${defaultThreads()}, the machine's cores)`, intList('--threads', 1))
    .option('-b, --batch <n>', 'tokens per forward batch in the pp test', int('--batch', 1), BENCH_DEFAULTS.batch)
    .option('--seed <n>', 'seed of the random token ids', int('--seed'), BENCH_DEFAULTS.seed)
    .option('--sparsity <profile.json>', 'a sparsity profile written by `ctxsparse calibrate` (for this model file)')
    .option('--json', 'print one JSON object: {model, path, file_bytes, results: [{threads, test, n_prompt, n_gen, reps, '
      + 'tokens_per_second: {mean, stdev, samples}, ...}], peak_rss_bytes, kv_cache_bytes, kernels, ...}; '
      + 'peak_rss_bytes is the process RSS high-water mark (maxRSS), not one test\'s own use')
    .addHelpText('after', '\nTokens/s are the mean ± sample standard deviation of the per-run rates (llama-bench\'s avg_ts, stddev_ts).\n'
      + 'Peak RSS is the process high-water mark (process.resourceUsage().maxRSS): after several thread counts it covers all of them.');
  addSparseHeadOptions(cmd, 'opt-in');
  cmd.action(async (o: BenchFlags) => {
      if (o.nPrompt === 0 && o.nGen === 0) throw new CtxError('-p and -n are both 0: nothing to measure');
      const path = resolveModel(o.model);
      const profile = o.sparsity !== undefined ? loadProfile(o.sparsity) : undefined;
      let policy: MeasuredPolicy | undefined;
      let head: SparseHead | null = null;
      const threads = o.threads ?? [defaultThreads()];
      const total = threads.length * ((o.nPrompt > 0 ? 1 : 0) + (o.nGen > 0 ? 1 : 0)) * (o.repetitions + 1);
      let done = 0;
      const bar = progressBar('bench', total);
      const report = await bench(path, {
        threads, nPrompt: o.nPrompt, nGen: o.nGen, reps: o.repetitions, batch: o.batch, seed: o.seed,
        name: looksLikePath(o.model) ? undefined : o.model,
        ...(o.tokenizer !== undefined && { tokenizerPath: o.tokenizer }),
        ...(profile && {
          makePolicy: (model: Model) => {
            checkProfileModel(profile, o.sparsity!, model);
            return (policy = fromProfile(profile, model));
          },
        }),
        ...(o.sparseHead && {
          makeHead: (model: Model) => {
            head = sparseHeadFor(o, model);
            if (head) head.record = true;
            return head;
          },
        }),
        onProgress: (p) => bar.update(done++, `t=${p.threads} ${p.test} ${p.run === 0 ? 'warm-up' : `${p.run}/${p.reps}`}`),
      });
      bar.update(total);
      bar.stop();
      const sparsity = profile && policy && {
        profile: o.sparsity, method: profile.method, target: profile.sparsity, allocation: profile.allocation, density: policy.realized().linear,
      };
      const h = head as SparseHead | null;
      const sparseHead = h && {
        screen_bytes: h.screenBytes, head_bytes: h.W.rows * h.W.rowBytes, e_unit: h.eUnit, safety: h.safety,
        rescored: percentiles(h.stats.rescored), steps: h.stats.steps, dense_steps: h.stats.dense,
        ...(h.second && { first_stage: { blocks: h.screen.nb1, of: h.screen.nb, rows: percentiles(h.stats.first) } }),
      };
      const extra = { ...(sparsity && { sparsity }), ...(sparseHead && { sparse_head: sparseHead }) };
      if (o.json) process.stdout.write(JSON.stringify({ ...report, ...extra }) + '\n');
      else {
        process.stdout.write(table(report) + (sparsity ? `sparsity: ${sparsity.method} ${sparsity.target} (${o.sparsity}), realized density ${sparsity.density.toFixed(3)} of the linears' weights\n` : ''));
        if (sparseHead) {
          process.stdout.write(`sparse head: screen ${(sparseHead.screen_bytes / 1e6).toFixed(1)} MB (head ${(sparseHead.head_bytes / 1e6).toFixed(1)} MB), `
            + `rows computed exactly per step: median ${sparseHead.rescored.median}, p99 ${sparseHead.rescored.p99} of ${h.V}\n`);
        }
      }
    });
}

const MiB = 1024 * 1024;

/** Bytes as llama-bench prints sizes: GiB, MiB (or KiB for tiny files). */
function binary(b: number): string {
  if (b >= 1024 * MiB) return `${(b / 1024 / MiB).toFixed(2)} GiB`;
  if (b >= MiB) return `${(b / MiB).toFixed(2)} MiB`;
  return `${(b / 1024).toFixed(2)} KiB`;
}

/** llama-bench's markdown table, then memory lines. */
export function table(r: BenchReport): string {
  const rows = [['model', 'size', 'kernels', 'threads', 'test', 't/s']];
  const size = binary(r.file_bytes);
  for (const t of r.results) {
    const ts = t.tokens_per_second;
    rows.push([`${r.model} (${r.arch})`, size, t.kernels, String(t.threads), t.test, `${ts.mean.toFixed(2)} ± ${ts.stdev.toFixed(2)}`]);
  }
  const right = [false, true, false, true, true, true];
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, c) => (right[c] ? cell.padStart(w[c]!) : cell.padEnd(w[c]!))).join(' | ')} |`;
  const rule = `| ${w.map((n, c) => (right[c] ? '-'.repeat(n - 1) + ':' : '-'.repeat(n))).join(' | ')} |`;
  const out = [line(rows[0]!), rule, ...rows.slice(1).map(line)];
  out.push('');
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  for (const l of r.loads) out.push(`threads ${l.threads}: loaded in ${l.load_seconds.toFixed(2)} s, peak RSS ${mb(l.peak_rss_bytes)} (process high-water mark so far)`);
  const reps = r.results[0]?.reps ?? 0;
  out.push(`KV cache: ${binary(r.kv_cache_bytes)} for ${r.n_ctx} positions (f32 keys and values); ${reps} timed run${reps === 1 ? '' : 's'} per test after one warm-up`);
  return out.join('\n') + '\n';
}
