// `ctxsparse sweep`: calibrate, evaluate and benchmark every (method, level) point and dense
// once; DIR/results.json and a self-contained DIR/report.html. Resumable (finished points are skipped).

import { basename } from 'node:path';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { greedyPrompts, loadTask } from '../eval/tasks.js';
import { sweep, type SweepMethod } from '../eval/sweep.js';
import { looksLikePath } from '../models/catalog.js';
import { defaultCalibrationFile } from '../sparsity/calibrate.js';
import { METHODS, modelName } from '../sparsity/profile.js';
import { addEvalOptions, taskProgress } from './eval.js';
import { addModelOptions, int, num, openModel, progressBar, readTextFile } from './common.js';

interface SweepFlags {
  model: string;
  tokenizer?: string;
  threads?: number;
  methods: SweepMethod[];
  sparsity: number[];
  tasks: string[];
  limit?: number;
  ctx: number;
  greedyPrompts: number;
  greedyTokens: number;
  benchGen: number;
  benchReps: number;
  attributionTokens: number;
  calibrationData?: string;
  calibrationTokens?: number;
  calibrationSkip?: number;
  out: string;
}

const SWEEP_METHODS = ['dense', ...METHODS] as const;

function methodList(s: string): SweepMethod[] {
  const parts = s.split(',').map((x) => x.trim());
  for (const p of parts) if (!(SWEEP_METHODS as readonly string[]).includes(p)) throw new CtxError(`--methods: expected a comma list of ${SWEEP_METHODS.join(', ')}, got "${p}"`);
  if (new Set(parts).size !== parts.length) throw new CtxError(`--methods: a method is listed twice in "${s}"`);
  return parts as SweepMethod[];
}

function levelList(s: string): number[] {
  const one = num('--sparsity', (v) => v > 0 && v < 1, 'a comma list of numbers in (0, 1)');
  const v = s.split(',').map((x) => one(x.trim()));
  if (new Set(v).size !== v.length) throw new CtxError(`--sparsity: a level is listed twice in "${s}"`);
  return v;
}

export function register(program: Command): void {
  const cmd = program
    .command('sweep')
    .description('calibrate, evaluate and benchmark every (method, level) point and dense once; writes DIR/results.json and a self-contained DIR/report.html (resumable)')
    .option('--methods <list>', `comma list of ${SWEEP_METHODS.join(', ')}`, methodList, ['dense', ...METHODS])
    .option('--sparsity <levels>', 'comma list of target sparsity levels, each in (0, 1)', levelList, [0.25, 0.4, 0.5, 0.6, 0.7])
    .option('--calibration-data <file>', 'calibration text (default: WikiText-2 test after the 100 chunks of 512 perplexity evaluates)')
    .option('--calibration-tokens <n>', 'calibration tokens (whole chunks; default 16384)', int('--calibration-tokens', 1))
    .option('--calibration-skip <n>', 'tokens of the calibration text skipped first (default 51200 for the default text, 0 with --calibration-data)', int('--calibration-skip', 0))
    .option('--attribution-tokens <n>', 'tokens of the first perplexity text over which each point\'s error is traced to layers and linears (0 = skip; a resumed sweep adds it to points without it)', int('--attribution-tokens', 0), 256)
    .requiredOption('-o, --out <dir>', 'output directory: profiles/, points/, settings.json, results.json, report.html');
  addEvalOptions(cmd, false);
  addModelOptions(cmd);
  cmd.action((o: SweepFlags) => {
    const tasks = o.tasks.map(loadTask);
    const calFile = o.calibrationData ?? defaultCalibrationFile();
    const calText = readTextFile(calFile, '--calibration-data');
    const model = openModel(o);
    const name = looksLikePath(o.model) ? modelName(model.path) : o.model;
    // read even for a dense-only sweep: the settings a resumed sweep is checked against include them
    const greedy = o.greedyPrompts > 0 ? { ...greedyPrompts(o.greedyPrompts), tokens: o.greedyTokens } : undefined;
    const total = (o.methods.includes('dense') ? 1 : 0) + o.methods.filter((m) => m !== 'dense').length * o.sparsity.length;
    const bar = progressBar('sweep', total);
    const inner = taskProgress('sweep task');
    const t0 = performance.now();
    let cur = { what: '', done: 0 };
    const results = sweep(model, {
      out: o.out, name, methods: o.methods, levels: o.sparsity, tasks, taskSpecs: o.tasks, attributionTokens: o.attributionTokens,
      eval: {
        ctx: o.ctx, ...(o.limit !== undefined && { limit: o.limit }), ...(greedy && { greedy }),
        bench: { nGen: o.benchGen, reps: o.benchReps }, ...(o.threads !== undefined && { threads: o.threads }),
      },
      calibration: {
        text: calText, dataName: basename(calFile),
        ...(o.calibrationSkip !== undefined ? { skipTokens: o.calibrationSkip } : o.calibrationData !== undefined && { skipTokens: 0 }),
        ...(o.calibrationTokens !== undefined && { tokens: o.calibrationTokens }),
      },
      onPoint: (p) => {
        const what = p.method === 'dense' ? 'dense' : `${p.method} ${p.level}`;
        cur = { what, done: p.done };
        bar.update(p.done, `${what}: ${p.phase}`);
        if (!process.stderr.isTTY) {
          const secs = p.seconds !== undefined ? ` in ${p.seconds.toFixed(1)} s` : '';
          process.stderr.write(`sweep [${p.done}/${p.total}] ${what}: ${p.phase === 'skip' ? 'already done (skipped)' : p.phase}${secs}\n`);
        }
      },
      // on a terminal the task's progress goes into the sweep's bar; in logs, a line per task
      onProgress: process.stderr.isTTY ? (task, d, n) => bar.update(cur.done, `${cur.what}: ${task} ${d}/${n}`) : inner.update,
    });
    bar.stop();
    inner.stop();
    const secs = (performance.now() - t0) / 1000;
    process.stdout.write(`sweep of ${name}: ${results.points.length} points in ${secs.toFixed(1)} s; wrote ${o.out}/results.json and ${o.out}/report.html\n`);
  });
}
