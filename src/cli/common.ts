// Options and helpers shared by the commands: model resolution, number flags, prompt input.

import { readFileSync, statSync } from 'node:fs';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { loadModel, type Model } from '../model/load.js';
import { DEFAULT_MODEL, resolveModel } from '../models/catalog.js';
import { SAMPLER_DEFAULTS, type SamplerOptions } from '../generate/sampler.js';
import { fromProfile } from '../sparsity/index.js';
import type { MeasuredPolicy } from '../sparsity/measure.js';
import { checkProfileModel, loadProfile, type Profile } from '../sparsity/profile.js';
import type { SparseHead } from '../sparsity/head.js';
import { buildSparseHead, loadHeadProfile } from '../sparsity/head-model.js';

export function addModelOptions(cmd: Command): Command {
  return cmd
    .option('-m, --model <name|path>', `catalog name or path to a .gguf (or llama2.c .bin) file`, DEFAULT_MODEL)
    .option('--tokenizer <path>', 'tokenizer for a llama2.c .bin checkpoint (default: tok512.bin beside it)')
    .option('--threads <n>', 'worker threads for the kernels (default: the machine\'s cores)', int('--threads', 1));
}

export function openModel(opts: { model: string; tokenizer?: string; threads?: number }): Model {
  const path = resolveModel(opts.model);
  return loadModel(path, {
    ...(opts.tokenizer !== undefined && { tokenizerPath: opts.tokenizer }),
    ...(opts.threads !== undefined && { threads: opts.threads }),
  });
}

/** `--sparsity profile.json`: run the model with a calibrated sparsity method. */
export function addSparsityOption(cmd: Command): Command {
  return cmd.option('--sparsity <profile.json>', 'a sparsity profile written by `ctxsparse calibrate` (for this model file)');
}

/** The policy of `--sparsity FILE` for `model` (the profile checked against it), or undefined without the flag. */
export function sparsityPolicy(file: string | undefined, model: Model): { policy: MeasuredPolicy; profile: Profile; file: string } | undefined {
  if (file === undefined) return undefined;
  const profile = loadProfile(file);
  checkProfileModel(profile, file, model);
  return { policy: fromProfile(profile, model), profile, file };
}

/** A parser for commander that turns a flag's text into a number or fails naming the flag. */
export function num(flag: string, check: (v: number) => boolean = () => true, what = 'a number'): (s: string) => number {
  return (s: string) => {
    const v = Number(s);
    if (s.trim() === '' || !Number.isFinite(v) || !check(v)) throw new CtxError(`${flag}: expected ${what}, got "${s}"`);
    return v;
  };
}
export const int = (flag: string, min = 0) => num(flag, (v) => Number.isInteger(v) && v >= min, `an integer ≥ ${min}`);

export function addSamplingOptions(cmd: Command): Command {
  return cmd
    .option('--temperature <t>', `sampling temperature; 0 = greedy`, num('--temperature', (v) => v >= 0, 'a number ≥ 0'), SAMPLER_DEFAULTS.temperature)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', int('--top-k'), SAMPLER_DEFAULTS.topK)
    .option('--top-p <p>', 'nucleus sampling: keep the smallest set with probability ≥ p (1 = off)', num('--top-p', (v) => v > 0 && v <= 1, 'a number in (0, 1]'), SAMPLER_DEFAULTS.topP)
    .option('--min-p <p>', 'drop tokens below p × the top probability (0 = off)', num('--min-p', (v) => v >= 0 && v <= 1, 'a number in [0, 1]'), SAMPLER_DEFAULTS.minP)
    .option('--repeat-penalty <r>', 'penalise recently seen tokens (1 = off)', num('--repeat-penalty', (v) => v > 0, 'a number > 0'), SAMPLER_DEFAULTS.repeatPenalty)
    .option('--repeat-last-n <n>', 'how many recent tokens the penalty considers', int('--repeat-last-n'), SAMPLER_DEFAULTS.repeatLastN)
    .option('--seed <n>', 'random seed (same seed, same text)', int('--seed'));
}

export interface SamplingFlags {
  temperature: number; topK: number; topP: number; minP: number; repeatPenalty: number; repeatLastN: number; seed?: number;
}

export function samplerOptions(o: SamplingFlags): SamplerOptions {
  return {
    temperature: o.temperature, topK: o.topK, topP: o.topP, minP: o.minP,
    repeatPenalty: o.repeatPenalty, repeatLastN: o.repeatLastN, ...(o.seed !== undefined && { seed: o.seed }),
  };
}

export function readTextFile(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new CtxError(`${flag} ${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The prompt from --prompt or --file (exactly one). */
export function promptText(o: { prompt?: string; file?: string }): string {
  if (o.prompt !== undefined && o.file !== undefined) throw new CtxError('give --prompt or --file, not both');
  if (o.file !== undefined) return readTextFile(o.file, '--file');
  if (o.prompt === undefined) throw new CtxError('missing prompt: give --prompt TEXT or --file PATH');
  return o.prompt;
}

/** A progress bar on stderr when it is a terminal; silent otherwise. */
export function progressBar(label: string, total: number): { update(n: number, extra?: string): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar({
    format: `${label} [{bar}] {value}/{total} {extra} eta {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0, { extra: '' });
  return { update: (n, extra = '') => bar.update(n, { extra }), stop: () => bar.stop() };
}

export function peakRssMB(): number {
  return Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10;
}

/**
 * generate, chat and serve use the sparse output layer unless told otherwise (`--exact`) when the
 * output matrix holds at least this share of the model file's bytes (SmolLM2-135M 31%,
 * Qwen2.5-0.5B 37%, Gemma-3-270M 72%; a 7B Llama ~2%, where the screen could save little).
 */
export const AUTO_HEAD_SHARE = 0.25;

/**
 * `--sparse-head` / `--exact`: the sparse output layer (src/sparsity/head.ts). 'auto': on by default
 * where it pays (AUTO_HEAD_SHARE), `--exact` turns it off; 'opt-in': only with `--sparse-head`.
 */
export function addSparseHeadOptions(cmd: Command, mode: 'auto' | 'opt-in'): Command {
  const auto = mode === 'auto';
  cmd.option('--sparse-head', 'sparse output layer: a 4-bit screen of the output matrix, read in two stages, picks the rows computed exactly'
    + (auto ? ` (the default when the output matrix is ≥ ${100 * AUTO_HEAD_SHARE}% of the model file's bytes: SmolLM2, Qwen2.5 and Gemma 3 of the catalog; --exact turns it off)` : '') + '. '
    + 'The greedy token equals the dense one only as far as the calibrated screen error holds (empirical: 0 differing steps in the 25,500 scored positions of the WikiText-2 eval text per model, in 20 × 64-token continuations and in all 14 golden prompts of the three models so far with this calibration; 1 of 25,500 on Qwen with an earlier, shorter calibration text; '
    + 'README "Sparse output layer"); sampling: at most 1e-4 of the probability mass can differ. Its screen is built and calibrated once per model file (tens of seconds; `pull` does it for catalog models) and cached beside it')
    .option('--head-safety <c>', 'the sparse head\'s safety factor c on the per-row screening margins, the full screen\'s δ_i = c·k·r_i·‖h ⊙ s‖ and the first stage\'s c·k₁·(r_i·‖h ⊙ s‖ + t_i·‖(h ⊙ s)₂‖) (s: the screen\'s column scales, r_i = ‖Ŵ_i − W_i ⊘ s‖, t_i and (h ⊙ s)₂ the parts the first stage leaves out; default 1.25)', num('--head-safety', (v) => v > 0, 'a number > 0'))
    .option('--head-profile <file>', 'the sparse head\'s screen error factors (k, k₁, e) from `ctxsparse calibrate-head` (default: measured at load on a ~1,700-token built-in text, cached beside the model)');
  if (auto) cmd.option('--exact', 'the dense output layer (every logit exact), even where the sparse one is the default');
  return cmd;
}

export interface SparseHeadFlags { sparseHead?: boolean; headSafety?: number; headProfile?: string; exact?: boolean }

/** Whether the output matrix is a large enough share of the model file for the sparse head to be the default. */
export function sparseHeadPays(model: Model): boolean {
  if (model.format !== 'gguf') return false;
  const W = model.weights.output;
  let size = 0;
  try {
    size = statSync(model.path).size;
  } catch {
    return false;
  }
  return W.rows * W.rowBytes >= AUTO_HEAD_SHARE * size;
}

/**
 * The sparse head for `--sparse-head` (its screen error from --head-profile when given), or, with
 * `auto`, where it pays unless `--exact`; null: the dense head.
 */
export function sparseHeadFor(o: SparseHeadFlags, model: Model, auto = false): SparseHead | null {
  if (o.exact) return null;
  if (!o.sparseHead && !(auto && sparseHeadPays(model))) return null;
  const hp = o.headProfile !== undefined ? loadHeadProfile(o.headProfile, model) : undefined;
  const onBuild = (): void => {
    process.stderr.write(`ctxsparse: building the sparse output layer's screen for ${model.path} (once per model file, cached beside it${o.sparseHead ? '' : '; --exact skips it'})\n`);
  };
  return buildSparseHead(model, { onBuild, ...(o.headSafety !== undefined && { safety: o.headSafety }), ...(hp && { eUnit: hp.e_unit, kRow: hp.k_row, kFirst: hp.k_first, firstBlocks: hp.screen.first_blocks }) });
}
