#!/usr/bin/env node
// Dumps what scripts/screen-sim.py needs to simulate sparse-head screens offline: the output matrix
// dequantized (f32, vocab × hidden) and final hidden states (after the output norm, f32, n × hidden)
// of three texts: a calibration text, WikiText-2 test (2,048 positions in chunks of 256 from
// character 200,000) and the contexts of the 20 greedy prompts `eval --greedy-prompts` uses.
// Usage: node scripts/screen-sim-dump.mjs MODEL CALIBRATION_TEXT_FILE OUTDIR   (after `npm run build`)
// (scripts/screen-sim-calibration.txt is the ~1,700-token text the rotated screens were built from.)
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadModel } from '../dist/src/model/load.js';
import { resolveModel } from '../dist/src/models/catalog.js';
import { greedyPrompts } from '../dist/src/eval/tasks.js';
import { encodeEval } from '../dist/src/eval/choice.js';

const [name, calFile, outDir] = process.argv.slice(2);
if (!name || !calFile || !outDir) {
  console.error('usage: node scripts/screen-sim-dump.mjs MODEL CALIBRATION_TEXT_FILE OUTDIR');
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });
const m = loadModel(resolveModel(name), { threads: 2 });
const W = m.weights.output, D = W.cols, V = W.rows;
const row = new Float32Array(D), Wf = new Float32Array(V * D);
for (let r = 0; r < V; r++) { m.kernels.dequantizeRow(W, r, row); Wf.set(row, r * D); }
writeFileSync(`${outDir}/W.f32`, Buffer.from(Wf.buffer));
writeFileSync(`${outDir}/meta.json`, JSON.stringify({ model: name, vocab: V, dim: D }) + '\n');

/** final states of one sequence run from an empty cache */
function states(ids) {
  const out = [];
  const f = m.createForward(32);
  const kv = m.createCache(ids.length + 1);
  f.tap = (nm, _layer, data, rows, width) => { if (nm === 'final') for (let t = 0; t < rows; t++) out.push(data.slice(t * width, (t + 1) * width)); };
  f.run(kv, ids, 0, 'all');
  return out;
}
const save = (list, file) => {
  const b = new Float32Array(list.length * D);
  list.forEach((h, i) => b.set(h, i * D));
  writeFileSync(`${outDir}/${file}`, Buffer.from(b.buffer));
  return list.length;
};
const cal = save(states(m.tokenizer.encode(readFileSync(calFile, 'utf8'))), 'cal.f32');
const wt = m.tokenizer.encode(readFileSync(new URL('../../shared/eval/wikitext-2-raw/wiki.test.raw', import.meta.url), 'utf8').slice(200000, 400000), { parseSpecial: false });
const wtStates = [];
for (let c = 0; wtStates.length < 2048; c++) {
  const ids = wt.slice(c * 256, (c + 1) * 256);
  if (m.tokenizer.addBosDefault) ids[0] = m.tokenizer.bos;
  wtStates.push(...states(ids));
}
const nwt = save(wtStates.slice(0, 2048), 'wikitext.f32');
const nhs = save(greedyPrompts(20).prompts.flatMap((p) => states(encodeEval(m.tokenizer, p))), 'hellaswag.f32');
console.log(`${name}: W ${V}x${D}, states: calibration ${cal}, WikiText-2 ${nwt}, HellaSwag contexts ${nhs} → ${outDir}`);
process.exit(0);
