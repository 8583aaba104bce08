// The sweep's report: one self-contained HTML file (opens with no network) with Vega-Lite charts
// — perplexity, accuracy and decode tok/s against the realized density, each method a line and
// dense a marker, and per-layer density heat maps — and a table of every point. Vega and
// Vega-Lite's browser builds are inlined from node_modules; the data travel inside the specs.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ERROR_SITES } from './attribution.js';
import type { SweepPoint, SweepResults } from './sweep.js';

type Spec = Record<string, unknown>;

const SITE_ORDER = ['attn_in', 'attn_q', 'attn_out', 'ffn_in', 'ffn_neurons', 'ffn_down'];

/** x of a point: its realized linear density (dense: 1). */
export function pointDensity(p: SweepPoint): number {
  return p.method === 'dense' ? 1 : p.density?.linear ?? NaN;
}

const label = (p: SweepPoint): string => (p.method === 'dense' ? 'dense' : `${p.method} ${p.level}`);

/** Lines by method over density, and dense as a large black marker. */
function linesWithDense(values: Record<string, unknown>[], y: Spec, tooltip: Spec[], facet?: Spec): Spec {
  const x = { field: 'density', type: 'quantitative', title: 'realized density (share of linear weights read)', scale: { zero: false } };
  const layer = [
    {
      transform: [{ filter: "datum.method !== 'dense'" }],
      mark: { type: 'line', point: true },
      encoding: { x, y, color: { field: 'method', type: 'nominal', title: 'method' }, order: { field: 'density' }, tooltip },
    },
    {
      transform: [{ filter: "datum.method === 'dense'" }],
      mark: { type: 'point', shape: 'diamond', size: 140, filled: true, color: 'black' },
      encoding: { x, y, tooltip },
    },
  ];
  const base = { data: { values } };
  if (!facet) return { ...base, width: 520, height: 300, layer };
  return { ...base, facet, columns: 3, spec: { width: 300, height: 220, layer }, resolve: { scale: { y: 'independent' }, axis: { x: 'independent' } } };
}

/** The Vega-Lite specs of the report, by element id (exported so tests can render them headless). */
export function reportSpecs(r: SweepResults): Record<string, Spec> {
  const specs: Record<string, Spec> = {};
  const pts = r.points;
  const base = (p: SweepPoint) => ({ method: p.method, level: p.level, point: label(p), density: pointDensity(p) });
  const tipBase = [
    { field: 'point', title: 'point' },
    { field: 'density', format: '.3f', title: 'density' },
  ];

  const ppl: Record<string, unknown>[] = [];
  const acc: Record<string, unknown>[] = [];
  for (const p of pts) {
    const mcs: { acc: number; acc_norm: number }[] = [];
    for (const [task, t] of Object.entries(p.tasks)) {
      if (t.kind === 'perplexity') ppl.push({ ...base(p), task, ppl: t.ppl, stderr: t.ppl_stderr });
      else if (t.kind === 'multiple_choice') {
        mcs.push(t);
        acc.push({ ...base(p), panel: `${task} · acc`, value: t.acc, stderr: t.acc_stderr }, { ...base(p), panel: `${task} · acc_norm`, value: t.acc_norm, stderr: t.acc_norm_stderr });
      } else {
        acc.push({ ...base(p), panel: `${task} · acc`, value: t.acc, stderr: t.acc_stderr });
        ppl.push({ ...base(p), task: `${task} (last word)`, ppl: t.ppl, stderr: null });
      }
    }
    if (mcs.length > 0) {
      const mean = (k: 'acc' | 'acc_norm') => mcs.reduce((a, t) => a + t[k], 0) / mcs.length;
      acc.push({ ...base(p), panel: 'MC average · acc', value: mean('acc'), stderr: null }, { ...base(p), panel: 'MC average · acc_norm', value: mean('acc_norm'), stderr: null });
    }
  }
  if (ppl.length > 0) {
    specs['chart-ppl'] = linesWithDense(ppl, { field: 'ppl', type: 'quantitative', title: 'perplexity', scale: { type: 'log' } },
      [...tipBase, { field: 'ppl', format: '.3f' }, { field: 'stderr', format: '.3f', title: '± stderr' }], { field: 'task', type: 'nominal', title: null });
  }
  if (acc.length > 0) {
    // the averages first, then the tasks in the order run
    const panels = [...new Set(acc.map((a) => a.panel as string))].sort((a, b) => Number(!a.startsWith('MC average')) - Number(!b.startsWith('MC average')));
    specs['chart-acc'] = linesWithDense(acc, { field: 'value', type: 'quantitative', title: 'accuracy (%)', scale: { zero: false } },
      [...tipBase, { field: 'value', format: '.2f', title: 'accuracy' }, { field: 'stderr', format: '.2f', title: '± stderr' }],
      { field: 'panel', type: 'nominal', title: null, sort: panels });
  }
  const speed = pts.flatMap((p) => {
    const s = p.method === 'dense' ? p.decode_tok_s?.dense : p.decode_tok_s?.sparse;
    return s ? [{ ...base(p), tok_s: s.mean, stdev: s.stdev }] : [];
  });
  if (speed.length > 0) {
    specs['chart-speed'] = linesWithDense(speed, { field: 'tok_s', type: 'quantitative', title: 'decode tokens/s', scale: { zero: false } },
      [...tipBase, { field: 'tok_s', format: '.1f', title: 'tok/s' }, { field: 'stdev', format: '.1f', title: '± stdev' }]);
  }
  const heat = pts.flatMap((p) => (p.method === 'dense' || !p.density ? [] : p.density.layers.flatMap((row, layer) =>
    Object.entries(row).map(([site, d]) => ({ method: p.method, level: p.level, layer, site, density: d })))));
  if (heat.length > 0) {
    specs['chart-heat'] = layerHeatMap(heat,
      { field: 'site', type: 'nominal', sort: SITE_ORDER, title: 'site', axis: { labelAngle: -45 } },
      { field: 'density', type: 'quantitative', title: 'density', scale: { domain: [0, 1], scheme: 'viridis' } },
      [{ field: 'site' }, { field: 'density', format: '.3f' }]);
    specs['chart-heat'].resolve = { scale: { x: 'independent' } };
  }
  const attr = pts.flatMap((p) => (p.error_attribution ? p.error_attribution.layers.flatMap((row, layer) =>
    ERROR_SITES.map((site) => ({ method: p.method, level: p.level, layer, site, error: Math.max(row[site], 1e-6) }))) : []));
  if (attr.length > 0) {
    specs['chart-error'] = layerHeatMap(attr,
      { field: 'site', type: 'nominal', sort: [...ERROR_SITES], title: 'block', axis: { labelAngle: 0 } },
      { field: 'error', type: 'quantitative', title: 'rel. sq. error', scale: { type: 'log', scheme: 'inferno', reverse: true } },
      [{ field: 'site', title: 'block' }, { field: 'error', format: '.2e', title: 'relative squared error' }]);
  }
  return specs;
}

/** Heat maps per (method × target level) facet: x a site, y the layer, colour a value per cell. */
function layerHeatMap(values: { layer: number }[], x: Record<string, unknown>, color: Record<string, unknown>, tips: Record<string, unknown>[]): Spec {
  const layers = Math.max(...values.map((h) => h.layer)) + 1;
  return {
    data: { values },
    facet: { row: { field: 'method', type: 'nominal', title: 'method' }, column: { field: 'level', type: 'ordinal', title: 'target sparsity' } },
    spec: {
      width: { step: 26 }, height: Math.min(400, Math.max(60, layers * 9)),
      mark: 'rect',
      encoding: {
        x, y: { field: 'layer', type: 'ordinal', title: 'layer' }, color,
        tooltip: [{ field: 'method' }, { field: 'level' }, { field: 'layer' }, ...tips],
      },
    },
  };
}

/** JSON safe inside a <script> element. */
function scriptJson(v: unknown): string {
  return JSON.stringify(v).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A browser build from node_modules, with its source-map comment dropped and no `</script` inside. */
function inlineScript(spec: string): string {
  const require = createRequire(import.meta.url);
  const text = readFileSync(require.resolve(spec), 'utf8');
  return text.replace(/\n?\/\/# sourceMappingURL=.*$/m, '').replace(/<\/script/gi, '<\\/script');
}

const num = (x: number | undefined | null, d: number): string => (x === undefined || x === null || !Number.isFinite(x) ? '' : x.toFixed(d));

function pointsTable(r: SweepResults): string {
  const tasks = [...new Set(r.points.flatMap((p) => Object.keys(p.tasks)))];
  const head = ['point', 'density', ...tasks.flatMap((t) => {
    const k = r.points.find((p) => p.tasks[t])?.tasks[t]?.kind;
    return k === 'perplexity' ? [`${t} ppl`] : k === 'lambada' ? [`${t} acc`, `${t} ppl`] : [`${t} acc`, `${t} acc_norm`];
  }), 'top-1 agree %', 'KL', 'greedy match %', 'decode tok/s', 'seconds'];
  const rows = r.points.map((p) => {
    const cells = [label(p), num(pointDensity(p), 3)];
    for (const t of tasks) {
      const x = p.tasks[t];
      if (!x) cells.push('');
      else if (x.kind === 'perplexity') cells.push(`${num(x.ppl, 3)} ± ${num(x.ppl_stderr, 3)}`);
      else if (x.kind === 'lambada') cells.push(`${num(x.acc, 2)} ± ${num(x.acc_stderr, 2)}`, num(x.ppl, 2));
      else cells.push(`${num(x.acc, 2)} ± ${num(x.acc_stderr, 2)}`, `${num(x.acc_norm, 2)} ± ${num(x.acc_norm_stderr, 2)}`);
    }
    const a = p.agreement;
    const s = p.method === 'dense' ? p.decode_tok_s?.dense : p.decode_tok_s?.sparse;
    cells.push(a ? num(100 * a.top1, 2) : '', a ? num(a.kl, 4) : '', a?.greedy ? num(100 * a.greedy.match, 1) : '', s ? `${num(s.mean, 1)} ± ${num(s.stdev, 1)}` : '', num(p.seconds, 1));
    return cells;
  });
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>`
    + rows.map((row) => `<tr>${row.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('') + '</tbody></table>';
}

/** What the error heat map shows. */
function errorNote(r: SweepResults): string {
  const a = r.points.find((p) => p.error_attribution)?.error_attribution;
  const over = a ? ` over the first ${a.tokens} tokens of ${a.text}` : '';
  return `Per layer, the relative squared error Σ‖y − y_dense‖² / Σ‖y_dense‖² of each block's sparse outputs against dense ones computed from the same inputs${over}: `
    + 'qkv = the q, k, v projections, o = the attention output projection, mlp = the whole MLP block. Dark cells are the layers and linears a method hurts most; '
    + 'how those errors compound through the later layers is what the perplexity and agreement figures show.';
}

/** How the decode speeds were measured: by each point in turn, or re-measured in one run (bench/sweep-speed.mjs). */
function speedNote(r: SweepResults): string {
  const d = r.points.map((p) => p.decode_tok_s).filter((x) => x !== null);
  const first = d[0];
  if (first && d.every((x) => x!.interleaved)) {
    return `Single-token decode steps from an empty cache, re-measured after the sweep in one run: dense and every point took turns, ${first.reps} rounds of ${first.n_gen} tokens on ${first.threads ?? 'all'} threads, so that the ratios see the same machine.`;
  }
  const s = r.settings;
  return `Single-token decode steps from an empty cache (${s.bench_gen} tokens × ${s.bench_reps} runs after a warm-up, the same for every point, each measured when its point was evaluated).`;
}

export function renderReport(r: SweepResults): string {
  const specs = reportSpecs(r);
  const s = r.settings;
  const sections: [string, string, string][] = [
    ['chart-ppl', 'Perplexity vs realized density', 'Each method a line (target levels as points), dense the black diamond. LAMBADA\'s last-word perplexity is its own panel.'],
    ['chart-acc', 'Accuracy vs realized density', 'The average over the multiple-choice tasks, then each task (acc and acc_norm, percent).'],
    ['chart-speed', 'Decode tokens/s vs realized density', speedNote(r)],
    ['chart-error', 'Where the error comes from', errorNote(r)],
    ['chart-heat', 'Realized density per layer and site', 'Share of each site\'s elements kept, per layer, over all evaluated tokens of the point.'],
  ];
  const body = sections.filter(([id]) => specs[id]).map(([id, title, note]) => `<h2>${esc(title)}</h2><p class="note">${esc(note)}</p><div id="${id}" class="chart"></div>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ctxsparse sweep: ${esc(s.model)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
.note, .settings { color: #555; max-width: 60em; }
table { border-collapse: collapse; font-size: 12px; margin-top: 8px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
.chart { overflow-x: auto; }
</style>
<script>${inlineScript('vega/build/vega.min.js')}</script>
<script>${inlineScript('vega-lite/build/vega-lite.min.js')}</script>
</head><body>
<h1>ctxsparse sweep: ${esc(s.model)}</h1>
<p class="settings">Tasks ${esc(s.tasks.join(', '))}${s.limit !== null ? `, first ${s.limit} items each` : ''}; perplexity context ${s.ctx}; methods ${esc(r.methods.join(', '))} at target sparsity ${esc(r.levels.join(', '))};
calibration on ${esc(s.calibration.data)} (${s.calibration.tokens} tokens after ${s.calibration.skip_tokens}); written ${esc(r.written_at)}.
The x axis is the realized density: the share of the linear layers' weights the policy used, parameter-weighted, over the evaluated tokens.</p>
${body}
<h2>Points</h2>
${pointsTable(r)}
<script type="application/json" id="sweep-results">${scriptJson(r)}</script>
<script type="application/json" id="sweep-specs">${scriptJson(specs)}</script>
<script>
const specs = JSON.parse(document.getElementById('sweep-specs').textContent);
for (const [id, spec] of Object.entries(specs)) {
  new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'svg', container: '#' + id, hover: true }).runAsync()
    .catch((e) => { document.getElementById(id).textContent = 'chart error: ' + e; });
}
</script>
</body></html>
`;
}
