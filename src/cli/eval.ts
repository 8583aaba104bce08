// `ctxsparse eval`: perplexity, multiple-choice and LAMBADA tasks, optionally with a sparsity
// profile (then also agreement with the dense model, realized density and decode speed).

import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { EVAL_DEFAULTS, Evaluator, type EvalResult } from '../eval/harness.js';
import { greedyPrompts, loadTask, parseTaskList } from '../eval/tasks.js';
import { looksLikePath } from '../models/catalog.js';
import { modelName } from '../sparsity/profile.js';
import { addModelOptions, addSparseHeadOptions, addSparsityOption, int, openModel, progressBar, sparseHeadFor, sparsityPolicy, type SparseHeadFlags } from './common.js';
import { headAgreementLine } from '../eval/head-agreement.js';

interface EvalFlags extends SparseHeadFlags {
  model: string;
  tokenizer?: string;
  threads?: number;
  sparsity?: string;
  tasks: string[];
  limit?: number;
  ctx: number;
  greedyPrompts: number;
  greedyTokens: number;
  benchGen: number;
  benchReps: number;
  json?: string;
}

/** The eval flags the sweep shares. */
export function addEvalOptions(cmd: Command, tasksRequired: boolean): Command {
  const tasksHelp = 'comma list of tasks: wikitext, tinystories (perplexity), hellaswag, arc_easy, arc_challenge, piqa, boolq, openbookqa (multiple choice), '
    + 'lambada; or paths to task files of the same shapes';
  if (tasksRequired) cmd.requiredOption('--tasks <list>', tasksHelp, parseTaskList);
  else cmd.option('--tasks <list>', `${tasksHelp} (default: wikitext,arc_easy)`, parseTaskList, ['wikitext', 'arc_easy']);
  return cmd
    .option('--limit <n>', `the first n items of each task (perplexity: at most n chunks; default ${EVAL_DEFAULTS.chunks})`, int('--limit', 1))
    .option('--ctx <n>', 'perplexity tasks: tokens per chunk', int('--ctx', 4), EVAL_DEFAULTS.ctx)
    .option('--greedy-prompts <n>', 'with sparsity or --sparse-head: greedy-agreement prompts (the first n HellaSwag contexts; 0 = skip)', int('--greedy-prompts', 0), EVAL_DEFAULTS.greedyPrompts)
    .option('--greedy-tokens <n>', 'with sparsity or --sparse-head: greedy tokens per prompt', int('--greedy-tokens', 1), EVAL_DEFAULTS.greedyTokens)
    .option('--bench-gen <n>', 'decode speed: tokens per timed run (0 = skip)', int('--bench-gen', 0), EVAL_DEFAULTS.benchGen)
    .option('--bench-reps <n>', 'decode speed: timed runs after one warm-up', int('--bench-reps', 1), EVAL_DEFAULTS.benchReps);
}

export function register(program: Command): void {
  const cmd = program
    .command('eval')
    .description('evaluate a model on perplexity, multiple-choice and LAMBADA tasks (lm-evaluation-harness scoring); with --sparsity also agreement with dense, realized density and decode tok/s')
    .option('--json <file>', 'write the full results as JSON to this file');
  addEvalOptions(cmd, true);
  addModelOptions(cmd);
  addSparsityOption(cmd);
  addSparseHeadOptions(cmd, 'opt-in');
  cmd.addHelpText('after', '\nWith --sparse-head every score stays the dense output layer\'s; the sparse head is compared with it at every\n'
    + 'scored position of the perplexity tasks (same final state) and on the greedy prompts (free-running continuations).\n'
    + 'Its guarantee is empirical: the screen error bound k is measured, not proved (see the README for the disagreement measured).');
  cmd.action((o: EvalFlags) => {
    const tasks = o.tasks.map(loadTask);
    const model = openModel(o);
    const sparse = sparsityPolicy(o.sparsity, model);
    const head = sparseHeadFor(o, model);
    // agreement is measured on every position: none served by the dense head without screening
    if (head) head.adaptive = false;
    const name = looksLikePath(o.model) ? modelName(model.path) : o.model;
    const ev = new Evaluator(model, name, { cacheCtx: Math.max(EVAL_DEFAULTS.cacheCtx, o.ctx) });
    const greedy = (sparse || head) && o.greedyPrompts > 0 ? { ...greedyPrompts(o.greedyPrompts), tokens: o.greedyTokens } : undefined;
    const onProgress = taskProgress('eval');
    const r = ev.evaluate(tasks, sparse && {
      policy: sparse.policy,
      info: { profile: sparse.file, method: sparse.profile.method, level: sparse.profile.sparsity, allocation: sparse.profile.allocation },
    }, {
      ctx: o.ctx, ...(o.limit !== undefined && { limit: o.limit }), ...(greedy && { greedy }),
      bench: { nGen: o.benchGen, reps: o.benchReps, dense: true, sparse: true },
      ...(o.threads !== undefined && { threads: o.threads }),
      ...(head && { head }),
      onProgress: onProgress.update,
    });
    onProgress.stop();
    if (o.json !== undefined) {
      try {
        writeFileSync(o.json, JSON.stringify(r, null, 2) + '\n');
      } catch (e) {
        throw new CtxError(`--json ${o.json}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    process.stdout.write(formatResult(r));
  });
}

/** A progress bar per task on a terminal, a line per finished task otherwise (stderr). */
export function taskProgress(label: string): { update: (task: string, done: number, total: number) => void; stop: () => void } {
  let cur = '';
  let bar: ReturnType<typeof progressBar> | undefined;
  return {
    update: (task, done, total) => {
      if (task !== cur) {
        bar?.stop();
        bar = progressBar(`${label} ${task}`, total);
        cur = task;
      }
      bar!.update(done);
      if (!process.stderr.isTTY && done === total) process.stderr.write(`${label}: ${task} done (${total})\n`);
    },
    stop: () => bar?.stop(),
  };
}

const f = (x: number, d: number): string => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/** The readable table of one evaluation. */
export function formatResult(r: EvalResult): string {
  const head = r.sparsity ? `${r.model}, ${r.sparsity.method} ${r.sparsity.level} (${r.sparsity.profile})` : `${r.model}, dense`;
  const rows: string[][] = [['task', 'n', 'metric', 'value', '± stderr', r.sparsity ? 'dense' : '', r.sparsity ? 'density' : '', 'seconds']];
  for (const [name, t] of Object.entries(r.tasks)) {
    const dens = t.density !== undefined ? f(t.density, 3) : '';
    if (t.kind === 'perplexity') {
      rows.push([name, `${t.chunks}×${t.ctx}`, 'ppl', f(t.ppl, 4), f(t.ppl_stderr, 4), t.dense_ppl !== undefined ? f(t.dense_ppl, 4) : '', dens, f(t.seconds, 1)]);
    } else if (t.kind === 'multiple_choice') {
      rows.push([name, String(t.n), 'acc', f(t.acc, 2), f(t.acc_stderr, 2), '', dens, f(t.seconds, 1)]);
      rows.push(['', '', 'acc_norm', f(t.acc_norm, 2), f(t.acc_norm_stderr, 2), '', '', '']);
    } else {
      rows.push([name, String(t.n), 'acc', f(t.acc, 2), f(t.acc_stderr, 2), '', dens, f(t.seconds, 1)]);
      rows.push(['', '', 'ppl', f(t.ppl, 3), '', '', '', '']);
    }
  }
  const w = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const line = (row: string[]) => row.map((cell, c) => (c < 3 ? cell.padEnd(w[c]!) : cell.padStart(w[c]!))).join('  ').trimEnd();
  const out = [head, line(rows[0]!), ...rows.slice(1).map(line)];
  if (r.agreement) {
    const a = r.agreement;
    out.push(`agreement with dense: top-1 ${f(100 * a.top1, 2)}%, KL(dense‖sparse) ${f(a.kl, 4)} nats over ${a.positions} positions of ${a.texts.join(', ') || '(no perplexity task)'}`);
    if (a.greedy) out.push(`greedy: ${f(100 * a.greedy.match, 1)}% identical tokens, identical prefix ${f(100 * a.greedy.prefix, 1)}% (${a.greedy.prompts} prompts × ${a.greedy.tokens} tokens)`);
  }
  const h = r.sparse_head;
  if (h?.text) out.push(headAgreementLine(h.text, `scored positions of ${Object.entries(r.tasks).filter(([, t]) => t.kind === 'perplexity').map(([n]) => n).join(', ')}`));
  if (h?.greedy) {
    const g = h.greedy;
    out.push(`sparse head, greedy: ${g.identical_prompts} of ${g.prompts} prompts identical to the dense head for ${g.tokens} tokens, ${f(100 * g.match, 1)}% identical tokens, `
      + `rows computed exactly per step median ${g.steps.rescored.median}, p99 ${g.steps.rescored.p99}, head bytes read ${f(100 * g.steps.head_bytes_ratio, 1)}% of dense`);
  }
  if (r.density) out.push(`realized density: ${f(r.density.linear, 3)} of the linears' weights (${Object.entries(r.density.sites).map(([s, v]) => `${s} ${f(v, 3)}`).join(', ')})`);
  const d = r.decode_tok_s;
  if (d) out.push(`decode tok/s (${d.n_gen} tokens × ${d.reps}): ${d.dense ? `dense ${f(d.dense.mean, 1)} ± ${f(d.dense.stdev, 1)}` : ''}${d.dense && d.sparse ? ', ' : ''}${d.sparse ? `sparse ${f(d.sparse.mean, 1)} ± ${f(d.sparse.stdev, 1)}` : ''}`);
  out.push(`${f(r.seconds, 1)} s`);
  return out.join('\n') + '\n';
}
