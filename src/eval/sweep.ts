// A sweep over sparsity methods and levels: calibrate each method once for all its levels
// (profiles in DIR/profiles/), evaluate and benchmark every (method, level) point and dense once
// (each finished point saved at once in DIR/points/), then DIR/results.json and DIR/report.html.
// A restarted sweep skips the points whose files exist and reuses existing profiles; it refuses a
// DIR whose saved settings (model, tasks, limit, ...) differ, so one report never mixes settings.

import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CtxError } from '../errors.js';
import type { Model } from '../model/load.js';
import { CALIBRATION_DEFAULTS, calibrateLevels, EVAL_CHUNKS, EVAL_CTX } from '../sparsity/calibrate.js';
import { fromProfile } from '../sparsity/index.js';
import { checkProfileModel, loadProfile, modelSha256, saveProfile, type Method } from '../sparsity/profile.js';
import { attributeError, type ErrorAttribution } from './attribution.js';
import { Evaluator, type EvalOptions, type EvalResult } from './harness.js';
import { renderReport } from './report.js';
import type { Task } from './tasks.js';

export type SweepMethod = 'dense' | Method;

export interface SweepSettings {
  readonly model: string;
  readonly model_sha256: string;
  readonly tasks: string[];
  readonly limit: number | null;
  readonly ctx: number;
  readonly greedy_prompts: number;
  readonly greedy_tokens: number;
  readonly bench_gen: number;
  readonly bench_reps: number;
  readonly threads: number | null;
  readonly calibration: { readonly data: string; readonly skip_tokens: number; readonly tokens: number };
  /** tokens of the first perplexity text over which each point's error is attributed to layers and linears (0 = none) */
  readonly attribution_tokens?: number;
}

export interface SweepPoint extends EvalResult {
  readonly method: SweepMethod;
  /** the target sparsity (0 for dense) */
  readonly level: number;
  readonly profile: string | null;
  /** where the point's error comes from (src/eval/attribution.ts); absent for dense */
  readonly error_attribution?: ErrorAttribution;
}

export interface SweepResults {
  readonly settings: SweepSettings;
  readonly methods: SweepMethod[];
  readonly levels: number[];
  readonly points: SweepPoint[];
  readonly written_at: string;
}

export interface SweepOptions {
  readonly out: string;
  readonly name: string;
  readonly methods: readonly SweepMethod[];
  readonly levels: readonly number[];
  readonly tasks: readonly Task[];
  /** the task list as given (recorded in the settings) */
  readonly taskSpecs: readonly string[];
  readonly eval: Omit<EvalOptions, 'onProgress' | 'bench'> & { readonly bench: { readonly nGen: number; readonly reps: number } };
  readonly calibration: { readonly text: string; readonly dataName: string; readonly skipTokens?: number; readonly tokens?: number };
  /** tokens for the error attribution of each sparse point (default 256; 0 = none) */
  readonly attributionTokens?: number;
  readonly onPoint?: (p: { method: SweepMethod; level: number; phase: 'calibrate' | 'evaluate' | 'attribute' | 'skip' | 'done'; done: number; total: number; seconds?: number }) => void;
  readonly onProgress?: (task: string, done: number, total: number) => void;
}

export function pointFile(out: string, method: SweepMethod, level: number): string {
  return join(out, 'points', method === 'dense' ? 'dense.json' : `${method}-${level}.json`);
}

export function profileFile(out: string, method: Method, level: number): string {
  return join(out, 'profiles', `${method}-${level}.json`);
}

/** Write through a temporary file and rename, so an interrupted sweep never leaves half a point. */
function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  } catch (e) {
    throw new CtxError(`${file}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function readJson<T>(file: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new CtxError(`${file}: cannot read the saved sweep file (${(e as Error).message.split('\n')[0]}); delete it to recompute`);
  }
}

/** The points in the order plotted: dense first, then by method and level. */
function pointList(methods: readonly SweepMethod[], levels: readonly number[]): { method: SweepMethod; level: number }[] {
  const out: { method: SweepMethod; level: number }[] = [];
  if (methods.includes('dense')) out.push({ method: 'dense', level: 0 });
  for (const m of methods) if (m !== 'dense') for (const l of levels) out.push({ method: m, level: l });
  return out;
}

export function sweep(model: Model, opts: SweepOptions): SweepResults {
  const { out } = opts;
  for (const d of [out, join(out, 'profiles'), join(out, 'points')]) {
    try {
      mkdirSync(d, { recursive: true });
    } catch (e) {
      throw new CtxError(`--out ${d}: cannot create: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const ev = opts.eval;
  const settings: SweepSettings = {
    model: opts.name, model_sha256: modelSha256(model.path), tasks: [...opts.taskSpecs], limit: ev.limit ?? null, ctx: ev.ctx ?? EVAL_CTX,
    greedy_prompts: ev.greedy?.prompts.length ?? 0, greedy_tokens: ev.greedy?.tokens ?? 0,
    bench_gen: ev.bench.nGen, bench_reps: ev.bench.reps, threads: ev.threads ?? null,
    calibration: { data: opts.calibration.dataName, skip_tokens: opts.calibration.skipTokens ?? EVAL_CHUNKS * EVAL_CTX, tokens: opts.calibration.tokens ?? CALIBRATION_DEFAULTS.tokens },
    attribution_tokens: opts.attributionTokens ?? 256,
  };
  const settingsFile = join(out, 'settings.json');
  if (existsSync(settingsFile)) {
    const old = readJson<SweepSettings>(settingsFile);
    // threads change speed, not results, and the attribution is an extra (a resumed sweep adds it
    // to the points without one); everything else must match
    const strip = (s: SweepSettings) => JSON.stringify({ ...s, threads: null, attribution_tokens: null });
    if (strip(old) !== strip(settings)) {
      const diff = (Object.keys(settings) as (keyof SweepSettings)[]).filter((k) => k !== 'threads' && k !== 'attribution_tokens' && JSON.stringify(old[k]) !== JSON.stringify(settings[k]));
      throw new CtxError(`--out ${out} holds a sweep with other settings (${diff.map((k) => `${k}: ${JSON.stringify(old[k])} there, ${JSON.stringify(settings[k])} now`).join('; ')}); use another --out`);
    }
    if (old.attribution_tokens !== settings.attribution_tokens) writeAtomic(settingsFile, JSON.stringify(settings, null, 2) + '\n');
  } else writeAtomic(settingsFile, JSON.stringify(settings, null, 2) + '\n');

  // the attribution text: the start of the first perplexity task
  const attrTokens = settings.attribution_tokens ?? 0;
  const pplTask = opts.tasks.find((t) => t.data.kind === 'perplexity');
  const attrIds = attrTokens > 0 && pplTask && pplTask.data.kind === 'perplexity'
    ? model.tokenizer.encode(pplTask.data.text.slice(0, attrTokens * 16)).slice(0, attrTokens) : [];
  const attribute = (policy: Parameters<typeof attributeError>[1]): ErrorAttribution | undefined =>
    attrIds.length > 0 ? attributeError(model, policy, attrIds, pplTask!.name) : undefined;

  const evaluator = new Evaluator(model, opts.name, { cacheCtx: Math.max(2048, settings.ctx) });
  const list = pointList(opts.methods, opts.levels);
  let done = 0;
  const report = (method: SweepMethod, level: number, phase: 'calibrate' | 'evaluate' | 'attribute' | 'skip' | 'done', seconds?: number) =>
    opts.onPoint?.({ method, level, phase, done, total: list.length, ...(seconds !== undefined && { seconds }) });

  for (const method of [...new Set(list.map((p) => p.method))]) {
    const todo = list.filter((p) => p.method === method && !existsSync(pointFile(out, p.method, p.level)));
    for (const p of list) {
      if (p.method === method && !todo.includes(p)) {
        done++;
        // a point from before attributions (or with fewer tokens) gets one now
        const file = pointFile(out, p.method, p.level);
        const saved = p.method === 'dense' ? null : readJson<SweepPoint>(file);
        if (saved && attrIds.length > 0 && saved.error_attribution?.tokens !== attrIds.length) {
          report(method, p.level, 'attribute');
          const pf = profileFile(out, p.method as Method, p.level);
          const profile = loadProfile(pf);
          checkProfileModel(profile, pf, model);
          const a = attribute(fromProfile(profile, model));
          writeAtomic(file, JSON.stringify({ ...saved, ...(a && { error_attribution: a }) }, null, 2) + '\n');
        }
        report(method, p.level, 'skip');
      }
    }
    if (todo.length === 0) continue;
    if (method === 'dense') {
      report('dense', 0, 'evaluate');
      const r = evaluator.evaluate(opts.tasks, undefined, { ...ev, bench: { ...ev.bench, dense: true, sparse: false }, ...(opts.onProgress && { onProgress: opts.onProgress }) });
      writeAtomic(pointFile(out, 'dense', 0), JSON.stringify({ method: 'dense', level: 0, profile: null, ...r }, null, 2) + '\n');
      done++;
      report('dense', 0, 'done', r.seconds);
      continue;
    }
    // one calibration pass gives every missing level's profile
    const missing = todo.map((p) => p.level).filter((l) => !existsSync(profileFile(out, method, l)));
    if (missing.length > 0) {
      report(method, missing[0]!, 'calibrate');
      const profiles = calibrateLevels(model, {
        method, sparsity: missing[0]!, text: opts.calibration.text, dataName: opts.calibration.dataName,
        ...(opts.calibration.skipTokens !== undefined && { skipTokens: opts.calibration.skipTokens }),
        ...(opts.calibration.tokens !== undefined && { tokens: opts.calibration.tokens }),
      }, missing);
      for (const [i, pr] of profiles.entries()) saveProfile(pr, profileFile(out, method, missing[i]!));
    }
    for (const p of todo) {
      const file = profileFile(out, method, p.level);
      const profile = loadProfile(file);
      checkProfileModel(profile, file, model);
      report(method, p.level, 'evaluate');
      const r = evaluator.evaluate(opts.tasks, {
        policy: fromProfile(profile, model),
        info: { profile: file, method: profile.method, level: profile.sparsity, allocation: profile.allocation },
      }, { ...ev, bench: { ...ev.bench, dense: false, sparse: true }, ...(opts.onProgress && { onProgress: opts.onProgress }) });
      const a = attribute(fromProfile(profile, model));
      writeAtomic(pointFile(out, method, p.level), JSON.stringify({ method, level: p.level, profile: file, ...r, ...(a && { error_attribution: a }) }, null, 2) + '\n');
      done++;
      report(method, p.level, 'done', r.seconds);
    }
  }

  const results: SweepResults = {
    settings, methods: [...opts.methods], levels: [...opts.levels],
    points: list.map((p) => readJson<SweepPoint>(pointFile(out, p.method, p.level))),
    written_at: new Date().toISOString(),
  };
  writeAtomic(join(out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  writeAtomic(join(out, 'report.html'), renderReport(results));
  return results;
}
