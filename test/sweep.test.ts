// `ctxsparse sweep` on stories260K with tiny settings: every point saved, a rerun resumes without
// recomputing, and report.html is self-contained (inline scripts only) with the data and charts
// that Vega renders headless.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { reportSpecs } from '../src/eval/report.js';
import type { SweepResults } from '../src/eval/sweep.js';
import { fixturePath, ROOT, sharedPath } from './helpers.js';

const F32 = sharedPath('models', 'stories260K', 'gguf', 'stories260K-F32.gguf');
const CLI = join(ROOT, 'bin', 'ctxsparse.js');
const fx = (name: string) => fixturePath('eval', name);

test('sweep: points, profiles, results.json and a self-contained report; a rerun skips finished points', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'ctxsparse-sweep-')), 'sw');
  const args = [CLI, 'sweep', '-m', F32, '--threads', '1', '--methods', 'dense,teal,cats', '--sparsity', '0.3,0.6',
    '--tasks', `${fx('story.txt')},${fx('mc_tiny.jsonl')}`, '--limit', '2', '--ctx', '64',
    '--calibration-data', fx('story.txt'), '--calibration-tokens', '256',
    '--greedy-prompts', '2', '--greedy-tokens', '4', '--bench-gen', '4', '--bench-reps', '1', '--out', out];
  const first = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, /5 points/);
  assert.deepEqual(readdirSync(join(out, 'points')).sort(), ['cats-0.3.json', 'cats-0.6.json', 'dense.json', 'teal-0.3.json', 'teal-0.6.json']);
  assert.deepEqual(readdirSync(join(out, 'profiles')).sort(), ['cats-0.3.json', 'cats-0.6.json', 'teal-0.3.json', 'teal-0.6.json']);
  // one calibration per method for all its levels
  assert.equal(first.stderr.match(/: calibrate/g)?.length, 2);

  const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as SweepResults;
  assert.deepEqual(r.points.map((p) => `${p.method}-${p.level}`), ['dense-0', 'teal-0.3', 'teal-0.6', 'cats-0.3', 'cats-0.6']);
  const dense = r.points[0]!;
  assert.equal(dense.sparsity, null);
  assert.ok(dense.decode_tok_s!.dense!.mean > 0);
  for (const p of r.points.slice(1)) {
    assert.ok(p.density!.linear < 1 && p.density!.linear > 0, `${p.method} ${p.level} density`);
    assert.ok(p.agreement!.top1 > 0 && p.agreement!.top1 <= 1);
    assert.ok(p.decode_tok_s!.sparse!.mean > 0);
    assert.equal(p.decode_tok_s!.dense, null); // dense is benchmarked once, in its own point
  }
  // a higher target keeps less
  const teal = r.points.filter((p) => p.method === 'teal');
  assert.ok(teal[1]!.density!.linear < teal[0]!.density!.linear);

  // the report: scripts inline only, the data inside
  const html = readFileSync(join(out, 'report.html'), 'utf8');
  assert.doesNotMatch(html, /<script[^>]*\bsrc\s*=/i);
  assert.doesNotMatch(html, /<link[^>]*href\s*=\s*["']?https?:/i);
  assert.match(html, /<script>[\s\S]*vega[\s\S]*<\/script>/);
  const embedded = JSON.parse(html.match(/<script type="application\/json" id="sweep-results">([\s\S]*?)<\/script>/)![1]!) as SweepResults;
  assert.deepEqual(embedded.points.map((p) => p.tasks.story), r.points.map((p) => p.tasks.story));
  for (const id of ['chart-ppl', 'chart-acc', 'chart-speed', 'chart-error', 'chart-heat']) assert.match(html, new RegExp(`id="${id}"`));

  // every chart compiles and renders (headless, as the page does)
  const specs = reportSpecs(r);
  assert.deepEqual(Object.keys(specs).sort(), ['chart-acc', 'chart-error', 'chart-heat', 'chart-ppl', 'chart-speed']);
  for (const [id, spec] of Object.entries(specs)) {
    const view = new vega.View(vega.parse(vl.compile(spec as unknown as vl.TopLevelSpec).spec), { renderer: 'none' });
    const svg = await view.toSVG();
    assert.match(svg, /<path|<rect/, id);
  }
  // the heat map holds every layer × site of every sparse point
  const heat = (specs['chart-heat']!.data as { values: unknown[] }).values;
  const L = r.points[1]!.density!.layers.length;
  assert.equal(heat.length, 2 * L * 4 + 2 * L * 1); // TEAL: 4 sites, CATS: the neurons

  // where the error comes from: every sparse point, every layer and block, more at the higher level
  const meanErr = (p: (typeof r.points)[number]) => {
    const a = p.error_attribution!;
    assert.equal(a.layers.length, L);
    assert.equal(a.text, 'story');
    const v = a.layers.flatMap((row) => [row.qkv, row.o, row.mlp]);
    assert.ok(v.every((e) => Number.isFinite(e) && e >= 0));
    return v.reduce((x, y) => x + y, 0) / v.length;
  };
  assert.equal(dense.error_attribution, undefined);
  for (const p of r.points.slice(1)) assert.ok(meanErr(p) > 0, `${p.method} ${p.level}: some error`);
  assert.ok(meanErr(teal[1]!) > meanErr(teal[0]!), 'TEAL 0.6 errs more than 0.3');
  // TEAL leaves the MLP block's output error to its two thinned inputs; CATS leaves q, k, v and o exact
  for (const p of r.points.filter((q) => q.method === 'cats')) assert.ok(p.error_attribution!.layers.every((row) => row.qkv < 1e-3 && row.o < 1e-3));

  // rerun: nothing recomputed, files untouched
  const times = () => [...readdirSync(join(out, 'points')), ...readdirSync(join(out, 'profiles')).map((f) => `../profiles/${f}`)]
    .map((f) => `${f}:${statSync(join(out, 'points', f)).mtimeMs}`);
  const before = times();
  const again = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stderr.match(/already done \(skipped\)/g)?.length, 5);
  assert.doesNotMatch(again.stderr, /calibrate|evaluate/);
  assert.deepEqual(times(), before);

  // resuming after an interruption: a missing point is computed again, its profile reused
  const { rmSync } = await import('node:fs');
  rmSync(join(out, 'points', 'teal-0.6.json'));
  const resumed = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.equal(resumed.stderr.match(/already done \(skipped\)/g)?.length, 4);
  assert.match(resumed.stderr, /teal 0\.6: evaluate/);
  assert.doesNotMatch(resumed.stderr, /calibrate/);
  assert.ok(existsSync(join(out, 'points', 'teal-0.6.json')));

  // a point saved without an attribution (an older sweep) gets one on the next run, nothing else recomputed
  const { writeFileSync } = await import('node:fs');
  const f = join(out, 'points', 'cats-0.3.json');
  const { error_attribution: _drop, ...old } = JSON.parse(readFileSync(f, 'utf8')) as SweepResults['points'][number];
  writeFileSync(f, JSON.stringify(old));
  const upgraded = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(upgraded.status, 0, upgraded.stderr);
  assert.match(upgraded.stderr, /cats 0\.3: attribute/);
  assert.doesNotMatch(upgraded.stderr, /calibrate|evaluate/);
  assert.equal((JSON.parse(readFileSync(f, 'utf8')) as SweepResults['points'][number]).error_attribution!.layers.length, L);

  // other settings in the same directory are refused
  const other = spawnSync(process.execPath, args.map((a) => (a === '64' ? '32' : a)), { encoding: 'utf8' });
  assert.equal(other.status, 1);
  assert.match(other.stderr, /^error: --out .* holds a sweep with other settings \(ctx: 64 there, 32 now\); use another --out\n$/);
});
