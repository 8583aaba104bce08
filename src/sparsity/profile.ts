// A sparsity profile: what calibration decided (method, target, per-layer levels and thresholds)
// and for which model file (its sha256), saved as pretty JSON and loaded with validation.

import { createHash } from 'node:crypto';
import { closeSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { CtxError } from '../errors.js';
import { openForRead } from '../formats/files.js';
import type { Model } from '../model/load.js';
import { catalogNames, modelPath, validSidecar } from '../models/catalog.js';
import { SITES, type Site } from './measure.js';

export const METHODS = ['teal', 'cats', 'wina', 'chess'] as const;
export type Method = (typeof METHODS)[number];
export type Allocation = 'greedy' | 'greedy-layer' | 'uniform';
export const ALLOCATIONS: readonly Allocation[] = ['greedy', 'greedy-layer', 'uniform'];

/** One site's setting: the share of elements to drop and the threshold that drops it on the calibration data. */
export interface SiteSetting {
  /** target share dropped at this site (0 = dense) */
  readonly level: number;
  /** keep an element when its score (|x|, |x|·‖W[:,j]‖, |act(gate)|, |act(gate)|·E|up|) exceeds this */
  readonly threshold: number;
  /** CHESS: E|up_i| per neuron (the per-neuron threshold is threshold / channel_scale[i]) */
  readonly channel_scale?: number[];
}

export type LayerSettings = Partial<Record<Site, SiteSetting>>;

export interface Profile {
  readonly ctxsparse_profile: 1;
  readonly method: Method;
  /** the model-wide target: share of the sparsified weights skipped (parameter-weighted) */
  readonly sparsity: number;
  readonly allocation: Allocation;
  readonly model: { readonly name: string; readonly sha256: string; readonly arch: string; readonly layers: number };
  readonly calibration: {
    readonly data: string;
    /** tokens of the data skipped before the calibration tokens (the evaluation chunks) */
    readonly skip_tokens: number;
    readonly tokens: number;
    readonly chunk: number;
    readonly seed: number;
    /** token activations stored per site (allocation error estimates, CHESS neuron scores) */
    readonly samples: number;
    readonly seconds?: number;
  };
  /** parameter-weighted mean of the levels over the sparsified linears */
  readonly mean_level: number;
  readonly layers: LayerSettings[];
}

/** The sites each method sets (and a profile of that method must have in every layer). */
export const METHOD_SITES: Record<Method, readonly Site[]> = {
  teal: ['attn_in', 'attn_out', 'ffn_in', 'ffn_down'],
  wina: ['attn_in', 'attn_out', 'ffn_in', 'ffn_down'],
  cats: ['ffn_neurons'],
  chess: ['attn_q', 'attn_out', 'ffn_neurons'],
};

const shaCache = new Map<string, string>();

/** sha256 of a model file: its pull sidecar's when that still vouches for the file, else hashed. */
export function modelSha256(path: string): string {
  const st = statSync(path);
  const sc = validSidecar(path, st);
  if (sc) return sc.sha256;
  const key = `${path}:${st.size}:${st.mtimeMs}`;
  const have = shaCache.get(key);
  if (have) return have;
  const hash = createHash('sha256');
  const fd = openForRead(path);
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (let pos = 0; ;) {
      const n = readSync(fd, buf, 0, buf.length, pos);
      if (n <= 0) break;
      hash.update(buf.subarray(0, n));
      pos += n;
    }
  } finally {
    closeSync(fd);
  }
  const sha = hash.digest('hex');
  shaCache.set(key, sha);
  return sha;
}

/** The catalog name of a model file in the cache, else its file name. */
export function modelName(path: string): string {
  for (const n of catalogNames()) if (modelPath(n) === path) return n;
  return basename(path);
}

/** Numbers as short as they round-trip to the precision a profile needs (7 significant digits). */
function num(v: number): number {
  return Number(v.toPrecision(7));
}

/** Pretty JSON with arrays of numbers kept on one line. */
export function profileJSON(p: Profile): string {
  const text = JSON.stringify(p, (_k, v: unknown) => (typeof v === 'number' ? num(v) : v), 2);
  return text.replace(/\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g, (_m, body: string) => `[${body.replace(/,\s+/g, ', ')}]`) + '\n';
}

export function saveProfile(p: Profile, file: string): void {
  try {
    writeFileSync(file, profileJSON(p));
  } catch (e) {
    throw new CtxError(`${file}: cannot write the profile: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

type Json = Record<string, unknown>;

/** Read and validate a profile (structure only; `checkProfileModel` checks it against a model). */
export function loadProfile(file: string): Profile {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CtxError(`sparsity profile ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let j: unknown;
  try {
    j = JSON.parse(raw);
  } catch (e) {
    throw new CtxError(`sparsity profile ${file}: not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  return validateProfile(j, file);
}

export function validateProfile(j: unknown, file: string): Profile {
  const bad = (field: string, what: string): never => {
    throw new CtxError(`sparsity profile ${file}: field ${field}: ${what}`);
  };
  const obj = (v: unknown, field: string): Json => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : bad(field, 'expected an object'));
  const str = (v: unknown, field: string): string => (typeof v === 'string' ? v : bad(field, 'expected a string'));
  const number = (v: unknown, field: string, ok: (x: number) => boolean = () => true, what = 'a number'): number =>
    (typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : bad(field, `expected ${what}, got ${JSON.stringify(v)}`));
  const intAtLeast = (v: unknown, field: string, min: number) => number(v, field, (x) => Number.isInteger(x) && x >= min, `an integer ≥ ${min}`);

  const p = obj(j, '(top level)');
  if (p.ctxsparse_profile !== 1) bad('ctxsparse_profile', `expected 1 (a ctxsparse profile, version 1), got ${JSON.stringify(p.ctxsparse_profile)}`);
  const method = str(p.method, 'method');
  if (!(METHODS as readonly string[]).includes(method)) bad('method', `expected one of ${METHODS.join(', ')}, got "${method}"`);
  const m = method as Method;
  const sparsity = number(p.sparsity, 'sparsity', (x) => x > 0 && x < 1, 'a number in (0, 1)');
  const allocation = str(p.allocation, 'allocation');
  if (!(ALLOCATIONS as readonly string[]).includes(allocation)) bad('allocation', `expected one of ${ALLOCATIONS.join(', ')}, got "${allocation}"`);
  const model = obj(p.model, 'model');
  const sha = str(model.sha256, 'model.sha256');
  if (!/^[0-9a-f]{64}$/.test(sha)) bad('model.sha256', 'expected 64 lowercase hex digits');
  const nLayers = intAtLeast(model.layers, 'model.layers', 1);
  const cal = obj(p.calibration, 'calibration');
  str(cal.data, 'calibration.data');
  for (const k of ['skip_tokens', 'seed', 'samples']) intAtLeast(cal[k], `calibration.${k}`, 0);
  for (const k of ['tokens', 'chunk']) intAtLeast(cal[k], `calibration.${k}`, 1);
  number(p.mean_level, 'mean_level', (x) => x >= 0 && x < 1, 'a number in [0, 1)');
  if (!Array.isArray(p.layers)) bad('layers', 'expected an array');
  const layers = p.layers as unknown[];
  if (layers.length !== nLayers) bad('layers', `has ${layers.length} entries, model.layers says ${nLayers}`);
  for (const [l, entry] of layers.entries()) {
    const e = obj(entry, `layers[${l}]`);
    for (const k of Object.keys(e)) if (!(SITES as readonly string[]).includes(k)) bad(`layers[${l}].${k}`, `unknown site (expected ${SITES.join(', ')})`);
    for (const site of METHOD_SITES[m]) {
      const f = `layers[${l}].${site}`;
      const s = obj(e[site], f);
      number(s.level, `${f}.level`, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
      number(s.threshold, `${f}.threshold`, (x) => x >= 0, 'a number ≥ 0');
      if (m === 'chess' && site === 'ffn_neurons') {
        if (!Array.isArray(s.channel_scale)) bad(`${f}.channel_scale`, 'expected an array of numbers');
        for (const [i, v] of (s.channel_scale as unknown[]).entries()) number(v, `${f}.channel_scale[${i}]`, (x) => x >= 0, 'a number ≥ 0');
      }
    }
  }
  void sparsity;
  return p as unknown as Profile;
}

/** Refuse a profile made for another model file (or another shape). */
export function checkProfileModel(p: Profile, file: string, model: Model): void {
  const sha = modelSha256(model.path);
  if (p.model.sha256 !== sha) {
    throw new CtxError(`sparsity profile ${file} was calibrated for ${p.model.name} (sha256 ${p.model.sha256.slice(0, 12)}…), not for ${model.path} (sha256 ${sha.slice(0, 12)}…)`);
  }
  if (p.layers.length !== model.config.nLayers) throw new CtxError(`sparsity profile ${file}: ${p.layers.length} layers, the model has ${model.config.nLayers}`);
  if (p.method === 'chess') {
    for (const [l, e] of p.layers.entries()) {
      const n = e.ffn_neurons!.channel_scale!.length;
      if (n !== model.config.ffnDim) throw new CtxError(`sparsity profile ${file}: field layers[${l}].ffn_neurons.channel_scale: ${n} entries, the model has ${model.config.ffnDim} neurons`);
    }
  }
}
