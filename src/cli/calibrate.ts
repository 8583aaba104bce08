// `ctxsparse calibrate`: gather a method's statistics on calibration text, allocate the target
// sparsity, and write the profile that `--sparsity profile.json` loads.

import { basename } from 'node:path';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { CALIBRATION_DEFAULTS, calibrateLevels, defaultCalibrationFile, EVAL_CHUNKS, EVAL_CTX } from '../sparsity/calibrate.js';
import { ALLOCATIONS, METHODS, saveProfile, type Allocation, type Method } from '../sparsity/profile.js';
import { addModelOptions, int, num, openModel, progressBar, readTextFile } from './common.js';

interface CalibrateFlags {
  model: string;
  tokenizer?: string;
  threads?: number;
  method: string;
  sparsity: number[];
  allocation: string;
  data?: string;
  skip?: number;
  tokens: number;
  seed: number;
  samples?: number;
  out: string;
}

/** --sparsity: one level or a comma list, each in (0, 1). */
function sparsityList(s: string): number[] {
  const one = num('--sparsity', (v) => v > 0 && v < 1, 'a number in (0, 1)');
  return s.split(',').map((x) => one(x.trim()));
}

export function register(program: Command): void {
  const cmd = program
    .command('calibrate')
    .description('calibrate a training-free sparsity method on text and write its profile (per-layer levels and thresholds) for --sparsity')
    .requiredOption('--method <name>', `the method: ${METHODS.join(', ')}`)
    .requiredOption('--sparsity <s>', 'target share of weights skipped, in (0, 1) (TEAL/WINA: over all linears, parameter-weighted; CATS: MLP neurons; '
      + 'CHESS: each thinned input); a comma list writes one profile per level from one pass (--out then needs {sparsity})', sparsityList)
    .option('--allocation <kind>', 'TEAL and WINA: greedy-layer (within each layer, raise the site that adds the least output error '
      + 'per parameter; every layer at the target: TEAL\'s block-wise allocation), greedy (the same across all layers) or uniform', 'greedy-layer')
    .option('--data <file>', `calibration text (default: WikiText-2 test after its first ${EVAL_CHUNKS} chunks of ${EVAL_CTX} tokens, which perplexity evaluates)`)
    .option('--skip <n>', 'tokens of the text to skip first (default: 51200 for the default text, 0 with --data)', int('--skip', 0))
    .option('--tokens <n>', 'calibration tokens (whole chunks of 512)', int('--tokens', 1), CALIBRATION_DEFAULTS.tokens)
    .option('--samples <n>', 'token activations stored per site for the allocation (default 64; CHESS 128)', int('--samples', 1))
    .option('--seed <n>', 'seed of the sampled token positions', int('--seed', 0), CALIBRATION_DEFAULTS.seed)
    .requiredOption('-o, --out <file>', 'where to write the profile (JSON); {sparsity} in it is replaced by the level');
  addModelOptions(cmd);
  cmd.action((o: CalibrateFlags) => {
    if (!(METHODS as readonly string[]).includes(o.method)) throw new CtxError(`--method: expected one of ${METHODS.join(', ')}, got "${o.method}"`);
    if (!(ALLOCATIONS as readonly string[]).includes(o.allocation)) throw new CtxError(`--allocation: expected one of ${ALLOCATIONS.join(', ')}, got "${o.allocation}"`);
    if (o.sparsity.length > 1 && !o.out.includes('{sparsity}')) throw new CtxError('--out: several --sparsity levels need {sparsity} in the file name');
    const dataFile = o.data ?? defaultCalibrationFile();
    const text = readTextFile(dataFile, '--data');
    const t0 = performance.now();
    const model = openModel(o);
    let bar: ReturnType<typeof progressBar> | undefined;
    let phase = '';
    const profiles = calibrateLevels(model, {
      method: o.method as Method, sparsity: o.sparsity[0]!, allocation: o.allocation as Allocation,
      text, dataName: basename(dataFile), skipTokens: o.skip ?? (o.data === undefined ? EVAL_CHUNKS * EVAL_CTX : 0),
      tokens: o.tokens, seed: o.seed, ...(o.samples !== undefined && { samples: o.samples }),
      onProgress: (p, done, total) => {
        if (p !== phase) {
          bar?.stop();
          bar = progressBar(p, total);
          phase = p;
        }
        bar!.update(done);
      },
    }, o.sparsity);
    bar?.stop();
    const secs = (performance.now() - t0) / 1000;
    for (const profile of profiles) {
      const out = o.out.replaceAll('{sparsity}', String(profile.sparsity));
      saveProfile(profile, out);
      const L = profile.layers.length;
      const sites = new Map<string, number>();
      for (const e of profile.layers) for (const [s, v] of Object.entries(e)) sites.set(s, (sites.get(s) ?? 0) + v!.level / L);
      const levels = [...sites].map(([s, v]) => `${s} ${v.toFixed(3)}`).join(', ');
      process.stdout.write(`${profile.method} ${profile.sparsity} (${profile.allocation}) on ${profile.model.name}: ${profile.calibration.tokens} tokens of ${profile.calibration.data} after ${profile.calibration.skip_tokens}; `
        + `mean level ${profile.mean_level.toFixed(3)} (per site: ${levels}); wrote ${out} in ${secs.toFixed(1)}s\n`);
    }
  });
}
