#!/usr/bin/env node
// ctxsparse against llama.cpp on the same GGUF files, the same thread counts and the same test sizes:
// for each model and thread count, llama.cpp's `llama-bench` and `ctxsparse bench` run as separate
// processes, one after the other (which goes first alternates from one pair to the next), and the
// table gives tokens/s of both and ours / llama.cpp for prompt processing (pp) and generation (tg).
//
// Usage (after `npm run build`):
//   bench/vs-llama-cpp [--model NAME|PATH ...] [--threads 1,2] [-p 512] [-n 128] [-r 5] [--json]
//                      [--llama-bench PATH]
// The last line of the output (both modes) is the smallest tg ratio: `min tg ratio: 0.734`.
// With --json the first line is one JSON object with every raw result.
//
// llama-bench is looked for in
//   ${CTXSPARSE_CACHE:-~/.cache/ctxsparse}/llama.cpp/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin/llama-bench
// and built there when missing: the llama-cpp-python 0.3.36 sdist (which vendors llama.cpp) comes
// from `pip download`, is unpacked with `tar`, configured with
// `cmake -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release` (the flags of the existing build) and built
// with `cmake --build build -j2 --target llama-bench`. Build output goes to stderr.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const LLAMA_CPP_PYTHON = '0.3.36';
const CMAKE_FLAGS = ['-DLLAMA_CURL=OFF', '-DCMAKE_BUILD_TYPE=Release'];

class Fail extends Error {}
const fail = (msg) => { throw new Fail(msg); };

// ---------------------------------------------------------------- flags

function intFlag(flag, min) {
  return (s) => {
    const v = Number(s);
    if (s.trim() === '' || !Number.isInteger(v) || v < min) fail(`${flag}: expected an integer ≥ ${min}, got "${s}"`);
    return v;
  };
}

function intList(flag, min) {
  return (s) => {
    const parts = s.split(',').map((x) => x.trim());
    if (parts.some((x) => x === '' || !Number.isInteger(Number(x)) || Number(x) < min)) {
      fail(`${flag}: expected a comma list of integers ≥ ${min}, got "${s}"`);
    }
    return parts.map(Number);
  };
}

function parseFlags(argv) {
  const program = new Command()
    .name('bench/vs-llama-cpp')
    .description("tokens/s of `ctxsparse bench` and llama.cpp's `llama-bench` on the same GGUF files, side by side")
    .option('-m, --model <name|path>', 'catalog name or .gguf path; repeat or give a comma list (default: smollm2-135m-instruct)',
      (v, prev) => [...(prev ?? []), ...v.split(',').map((x) => x.trim()).filter((x) => x !== '')])
    .option('-t, --threads <list>', `comma list of thread counts (default: ${availableParallelism()})`, intList('--threads', 1))
    .option('-p, --n-prompt <n>', 'prompt tokens of the pp test (0 = skip)', intFlag('--n-prompt', 0), 512)
    .option('-n, --n-gen <n>', 'generated tokens of the tg test (0 = skip)', intFlag('--n-gen', 0), 128)
    .option('-r, --repetitions <n>', 'timed runs per test, for both programs', intFlag('--repetitions', 1), 5)
    .option('--llama-bench <path>', 'use this llama-bench binary instead of the cached build')
    .option('--json', 'print every raw result as one JSON object (first line), then the min tg ratio line')
    .exitOverride()
    .showHelpAfterError();
  program.parse(argv);
  const o = program.opts();
  if (o.nPrompt === 0 && o.nGen === 0) fail('-p and -n are both 0: nothing to measure');
  return { ...o, model: o.model?.length ? o.model : ['smollm2-135m-instruct'], threads: o.threads ?? [availableParallelism()] };
}

// ---------------------------------------------------------------- llama-bench: find or build

function cacheDir() {
  const env = process.env.CTXSPARSE_CACHE;
  return env && env.length > 0 ? env : join(homedir(), '.cache', 'ctxsparse');
}

function have(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** Run a build step with its output on stderr; fail with the command line if it fails. */
function step(cmd, args, opts = {}) {
  process.stderr.write(`$ ${opts.cwd ? `(cd ${opts.cwd} && ` : ''}${cmd} ${args.join(' ')}${opts.cwd ? ')' : ''}\n`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', process.stderr, process.stderr], ...opts });
  if (r.error) fail(`${cmd}: ${r.error.code === 'ENOENT' ? 'not found' : r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
}

function llamaBench(explicit) {
  if (explicit) {
    if (!existsSync(explicit)) fail(`--llama-bench ${explicit}: no such file`);
    return explicit;
  }
  const base = join(cacheDir(), 'llama.cpp');
  const src = join(base, `llama_cpp_python-${LLAMA_CPP_PYTHON}`, 'vendor', 'llama.cpp');
  const bin = join(src, 'build', 'bin', 'llama-bench');
  if (existsSync(bin)) return bin;

  process.stderr.write(`llama-bench not found at ${bin}: building it (llama-cpp-python ${LLAMA_CPP_PYTHON}'s vendored llama.cpp)\n`);
  if (!have('cmake')) fail('cmake not found: install CMake (≥ 3.14) and a C++ compiler to build llama-bench, or pass --llama-bench PATH');
  if (!existsSync(src)) {
    mkdirSync(base, { recursive: true });
    const sdist = () => readdirSync(base).find((f) => /^llama[_-]cpp[_-]python-0\.3\.36\.tar\.gz$/i.test(f));
    if (!sdist()) {
      const pip = have('pip') ? ['pip'] : have('python3', ['-m', 'pip', '--version']) ? ['python3', '-m', 'pip'] : null;
      if (!pip) fail('pip not found: install Python 3 with pip (it downloads the llama.cpp sources), or pass --llama-bench PATH');
      step(pip[0], [...pip.slice(1), 'download', '--no-binary', ':all:', '--no-deps', `llama-cpp-python==${LLAMA_CPP_PYTHON}`, '-d', base]);
    }
    const tarball = sdist() ?? fail(`pip download left no llama_cpp_python-${LLAMA_CPP_PYTHON}.tar.gz in ${base}`);
    if (!have('tar')) fail('tar not found: needed to unpack the llama.cpp sources');
    step('tar', ['-xzf', join(base, tarball), '-C', base]);
    if (!existsSync(src)) fail(`unpacking ${tarball} did not give ${src}`);
  }
  // an existing build directory keeps its configuration; a new one gets the flags the cached build used
  if (!existsSync(join(src, 'build', 'CMakeCache.txt'))) step('cmake', ['-S', '.', '-B', 'build', ...CMAKE_FLAGS], { cwd: src });
  step('cmake', ['--build', 'build', '-j2', '--target', 'llama-bench'], { cwd: src });
  if (!existsSync(bin)) fail(`the build finished but ${bin} is not there`);
  return bin;
}

// ---------------------------------------------------------------- the two benchmarks

function resolveModels(names) {
  const catalog = join(ROOT, 'dist', 'src', 'models', 'catalog.js');
  if (!existsSync(catalog) || !existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) fail('dist/ is missing: run `npm run build` first');
  return import(catalog).then(({ resolveModel }) => names.map((name) => {
    try {
      // paths are shown by file name in the table
      return { name: /[\\/]/.test(name) ? basename(name).replace(/\.gguf$/i, '') : name, path: resolveModel(name) };
    } catch (e) {
      if (e?.name === 'CtxError') fail(e.message); // a one-line user error (unknown or unpulled model, missing file)
      throw e;
    }
  }));
}

/** Run a benchmark process; stdout is returned, a failure names the program and its last stderr line. */
function run(what, cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) fail(`${what}: ${r.error.message}`);
  if (r.status !== 0) {
    // the one-line `error: …` of a user error, else the first line of a crash (its message), else the last line
    const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
    const line = lines.find((l) => /^error\b/i.test(l)) ?? lines.find((l) => /^\w*Error\b/.test(l)) ?? lines.pop() ?? '';
    fail(`${what} failed (exit ${r.status ?? r.signal}): ${line}`);
  }
  return r.stdout;
}

function runLlama(bin, path, t, o) {
  const args = ['-m', path, '-t', String(t), '-p', String(o.nPrompt), '-n', String(o.nGen), '-r', String(o.repetitions), '-o', 'json'];
  const out = run('llama-bench', bin, args);
  let raw;
  try {
    raw = JSON.parse(out);
  } catch {
    fail(`llama-bench ${args.join(' ')}: output is not JSON`);
  }
  const pick = (p, n) => raw.find((x) => x.n_prompt === p && x.n_gen === n && (x.n_depth ?? 0) === 0);
  const pp = o.nPrompt > 0 ? pick(o.nPrompt, 0) : undefined;
  const tg = o.nGen > 0 ? pick(0, o.nGen) : undefined;
  if ((o.nPrompt > 0 && !pp) || (o.nGen > 0 && !tg)) fail(`llama-bench ${args.join(' ')}: missing a pp or tg result`);
  const stat = (x) => x && { mean: x.avg_ts, stdev: x.stddev_ts };
  return { args, raw, pp: stat(pp), tg: stat(tg) };
}

/** The Node options on bin/ctxsparse.js's `#!/usr/bin/env -S node …` line. */
function launcherFlags() {
  const first = readFileSync(CLI, 'utf8').split('\n', 1)[0];
  const m = /^#!.*\bnode\b(.*)$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter((a) => a !== '') : [];
}

function runOurs(path, t, o) {
  const args = [CLI, 'bench', '--model', path, '--threads', String(t), '-p', String(o.nPrompt), '-n', String(o.nGen), '-r', String(o.repetitions), '--json'];
  // the Node flags the launcher's #! line gives `ctxsparse` (bin/ctxsparse.js), as a user runs it
  const raw = JSON.parse(run('ctxsparse bench', process.execPath, [...launcherFlags(), ...args]));
  const pick = (test) => raw.results.find((x) => x.test === test && x.threads === t)?.tokens_per_second;
  const stat = (x) => x && { mean: x.mean, stdev: x.stdev };
  return { args: args.slice(1), raw, pp: stat(pick(`pp${o.nPrompt}`)), tg: stat(pick(`tg${o.nGen}`)) };
}

// ---------------------------------------------------------------- output

function table(rows, o, meta) {
  const f = (s) => (s ? `${s.mean.toFixed(2)} ± ${s.stdev.toFixed(2)}` : '—');
  const ratio = (r) => (r === undefined ? '—' : r.toFixed(3));
  const pp = o.nPrompt > 0 ? `pp${o.nPrompt}` : 'pp';
  const tg = o.nGen > 0 ? `tg${o.nGen}` : 'tg';
  const head = ['model', 'threads', `${pp} ours`, `${pp} llama.cpp`, 'pp ratio', `${tg} ours`, `${tg} llama.cpp`, 'tg ratio'];
  const body = rows.map((r) => [r.model, String(r.threads), f(r.ours.pp), f(r.llama.pp), ratio(r.pp_ratio), f(r.ours.tg), f(r.llama.tg), ratio(r.tg_ratio)]);
  const all = [head, ...body];
  const w = head.map((_, c) => Math.max(...all.map((row) => row[c].length)));
  const line = (row) => `| ${row.map((cell, c) => (c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join(' | ')} |`;
  const rule = `| ${w.map((n, c) => (c === 0 ? '-'.repeat(n) : '-'.repeat(n - 1) + ':')).join(' | ')} |`;
  return [
    `${meta.date}, ${meta.cpu} (${meta.cores} cores), tokens/s mean ± stdev of ${o.repetitions} run${o.repetitions === 1 ? "" : "s"} after one warm-up; ratio = ours / llama.cpp`,
    `ctxsparse kernels: ${meta.kernels.join(', ') || '?'}; llama.cpp ${meta.llama_build.join(', ') || '?'} (llama-bench defaults: f16 KV cache, n_batch 2048)`,
    '',
    line(head), rule, ...body.map(line), '',
  ].join('\n');
}

async function main() {
  const o = parseFlags(process.argv);
  const models = await resolveModels(o.model);
  const bin = llamaBench(o.llamaBench);
  const tty = process.stderr.isTTY;
  const rows = [];
  let k = 0;
  const total = models.length * o.threads.length;
  for (const m of models) {
    for (const t of o.threads) {
      const llamaFirst = k % 2 === 0;
      k++;
      let llama, ours;
      for (const which of llamaFirst ? ['llama', 'ours'] : ['ours', 'llama']) {
        if (tty) process.stderr.write(`[${k}/${total}] ${m.name} threads ${t}: ${which === 'llama' ? 'llama-bench' : 'ctxsparse bench'}…\n`);
        if (which === 'llama') llama = runLlama(bin, m.path, t, o);
        else ours = runOurs(m.path, t, o);
      }
      const ratio = (a, b) => (a && b && b.mean > 0 ? a.mean / b.mean : undefined);
      rows.push({
        model: m.name, path: m.path, threads: t, first: llamaFirst ? 'llama.cpp' : 'ctxsparse',
        ours, llama, pp_ratio: ratio(ours.pp, llama.pp), tg_ratio: ratio(ours.tg, llama.tg),
      });
    }
  }
  const tgRatios = rows.map((r) => r.tg_ratio).filter((x) => x !== undefined);
  const minTg = tgRatios.length ? Math.min(...tgRatios) : undefined;
  const meta = {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? 'unknown CPU',
    cores: availableParallelism(),
    node: process.version,
    llama_bench: bin,
    kernels: [...new Set(rows.map((r) => r.ours.raw.kernels))],
    llama_build: [...new Set(rows.flatMap((r) => r.llama.raw.map((x) => x.build_commit)))],
  };
  if (o.json) {
    const settings = { n_prompt: o.nPrompt, n_gen: o.nGen, reps: o.repetitions, threads: o.threads };
    process.stdout.write(JSON.stringify({
      ...meta, settings,
      rows: rows.map((r) => ({
        model: r.model, path: r.path, threads: r.threads, first: r.first,
        pp_ratio: r.pp_ratio ?? null, tg_ratio: r.tg_ratio ?? null,
        ctxsparse: { args: r.ours.args, result: r.ours.raw },
        llama_cpp: { args: r.llama.args, result: r.llama.raw },
      })),
      min_tg_ratio: minTg ?? null,
    }) + '\n');
  } else {
    process.stdout.write(table(rows, o, meta));
  }
  process.stdout.write(`min tg ratio: ${minTg === undefined ? 'n/a (no tg test)' : minTg.toFixed(3)}\n`);
}

main().catch((e) => {
  if (e instanceof CommanderError) {
    process.exitCode = e.exitCode;
    return;
  }
  if (e instanceof Fail) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exitCode = 1;
    return;
  }
  process.stderr.write(`${e?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
