// `ctxsparse calibrate-head`: measure the sparse output layer's screen error on calibration text
// and write the head profile that `--head-profile` loads (its margin then uses this error instead
// of the ones measured at load on the built-in calibration text).

import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { defaultCalibrationFile, EVAL_CHUNKS, EVAL_CTX } from '../sparsity/calibrate.js';
import { SCREEN_FORMAT } from '../kernels/screen-layout.js';
import { buildSparseHead, measureScreenError, type HeadProfile } from '../sparsity/head-model.js';
import { modelName, modelSha256 } from '../sparsity/profile.js';
import { addModelOptions, int, openModel, progressBar, readTextFile } from './common.js';

interface Flags {
  model: string;
  tokenizer?: string;
  threads?: number;
  data?: string;
  skip?: number;
  tokens: number;
  out: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('calibrate-head')
    .description('measure the --sparse-head screen error (largest |screened − exact| logit per unit ‖h ⊙ c‖) on calibration text; write a head profile for --head-profile')
    .option('--data <file>', `calibration text (default: WikiText-2 test after its first ${EVAL_CHUNKS} chunks of ${EVAL_CTX} tokens, which perplexity evaluates)`)
    .option('--skip <n>', 'tokens of the text to skip first (default: 51200 for the default text, 0 with --data)', int('--skip', 0))
    .option('--tokens <n>', 'calibration tokens (chunks of 512)', int('--tokens', 1), 2048)
    .requiredOption('-o, --out <file>', 'where to write the head profile (JSON)');
  addModelOptions(cmd);
  cmd.action((o: Flags) => {
    const dataFile = o.data ?? defaultCalibrationFile();
    const text = readTextFile(dataFile, '--data');
    const model = openModel(o);
    const skip = o.skip ?? (o.data === undefined ? EVAL_CHUNKS * EVAL_CTX : 0);
    const all = model.tokenizer.encode(text);
    const tokens = all.slice(skip, skip + o.tokens);
    if (tokens.length < 2) throw new CtxError(`--data ${dataFile}: ${all.length} tokens, nothing left after skipping ${skip}`);
    const t0 = performance.now();
    const head = buildSparseHead(model);
    const bar = progressBar('calibrate-head', tokens.length);
    const bos = model.tokenizer.addBosDefault ? model.tokenizer.bos : undefined;
    const r = measureScreenError(model, head, tokens, { chunk: EVAL_CTX, ...(bos !== undefined && { bos }), onProgress: (d) => bar.update(d) });
    bar.stop();
    const sorted = [...r.perPosition].sort((a, b) => a - b);
    const q = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * (sorted.length - 1) + 0.5))] ?? 0;
    const profile: HeadProfile = {
      ctxsparse_head_profile: 3,
      model: { name: modelName(model.path), sha256: modelSha256(model.path) },
      e_unit: r.eUnit,
      k_row: r.kRow,
      k_first: r.kFirst,
      quantiles: { p50: q(0.5), p99: q(0.99), p999: q(0.999) },
      calibration: { data: basename(dataFile), skip_tokens: skip, tokens: tokens.length, chunk: EVAL_CTX },
      screen: { bits: 4, search: true, format: SCREEN_FORMAT, first_blocks: head.screen.nb1 },
    };
    writeFileSync(o.out, JSON.stringify(profile, null, 1) + '\n');
    process.stdout.write(`${profile.model.name}: screen error per unit ‖h ⊙ c‖ max ${r.eUnit.toPrecision(4)} (p50 ${profile.quantiles.p50.toPrecision(4)}, p99 ${profile.quantiles.p99.toPrecision(4)}), `
      + `per-row factor k ${r.kRow.toPrecision(4)}, first stage's ${r.kFirst.toPrecision(4)} over ${r.positions} positions; built-in defaults ${head.eUnit.toPrecision(4)}, ${head.kRow.toPrecision(4)}, ${head.kFirst.toPrecision(4)}; wrote ${o.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  });
}
