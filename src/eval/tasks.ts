// The evaluation tasks: the built-in names (files under ../shared/eval) and task files given by
// path, parsed into one of three shapes with errors that name the file and line.
//
// - perplexity: a plain text file (WikiText-2, TinyStories), scored as `ctxsparse perplexity` does;
// - multiple choice: `{query, choices, gold}` JSON lines, or HellaSwag's 6-line text format
//   (context, gold index, four endings);
// - LAMBADA: `{context, continuation}` JSON lines (last-word prediction).

import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CtxError } from '../errors.js';

export interface McItem {
  readonly query: string;
  readonly choices: readonly string[];
  readonly gold: number;
}

export interface LambadaItem {
  readonly context: string;
  readonly continuation: string;
}

export type TaskData =
  | { readonly kind: 'perplexity'; readonly text: string }
  | { readonly kind: 'multiple_choice'; readonly items: readonly McItem[] }
  | { readonly kind: 'lambada'; readonly items: readonly LambadaItem[] };

export interface Task {
  /** the built-in name, or the file's base name for a task file */
  readonly name: string;
  readonly file: string;
  readonly data: TaskData;
}

/** The built-in tasks and their files under the shared data directory. */
export const TASK_FILES = {
  wikitext: 'wikitext-2-raw/wiki.test.raw',
  tinystories: 'tinystories/tinystories_val_prefix.txt',
  hellaswag: 'hellaswag/hellaswag_val_full.txt',
  arc_easy: 'tasks/arc_easy.jsonl',
  arc_challenge: 'tasks/arc_challenge.jsonl',
  piqa: 'tasks/piqa.jsonl',
  boolq: 'tasks/boolq.jsonl',
  openbookqa: 'tasks/openbook_qa.jsonl',
  lambada: 'tasks/lambada_openai.jsonl',
} as const;
export type TaskName = keyof typeof TASK_FILES;
export const TASK_NAMES = Object.keys(TASK_FILES) as TaskName[];

/** ../shared/eval beside the project (CTXSPARSE_EVAL_DATA overrides). */
export function evalDataDir(): string {
  // this file is dist/src/eval/tasks.js
  return process.env.CTXSPARSE_EVAL_DATA ?? resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'shared', 'eval');
}

/** Does `s` name a file rather than a built-in task? */
function looksLikeFile(s: string): boolean {
  return s.includes('/') || s.includes('\\') || /\.(jsonl|txt|raw)$/i.test(s);
}

/** A built-in task name or a task file path → its file (unknown names are an error listing the known ones). */
export function taskFile(spec: string): { name: string; file: string } {
  if ((TASK_NAMES as string[]).includes(spec)) return { name: spec, file: resolve(evalDataDir(), TASK_FILES[spec as TaskName]) };
  if (looksLikeFile(spec)) return { name: basename(spec).replace(/\.(jsonl|txt|raw)$/i, ''), file: spec };
  throw new CtxError(`--tasks: unknown task "${spec}" (known: ${TASK_NAMES.join(', ')}; or give a path to a task file)`);
}

/** --tasks: a comma list of names or paths. */
export function parseTaskList(s: string): string[] {
  const parts = s.split(',').map((x) => x.trim());
  if (parts.length === 0 || parts.some((x) => x === '')) throw new CtxError(`--tasks: expected a comma list of task names or files, got "${s}"`);
  for (const p of parts) taskFile(p); // fail early on an unknown name
  if (new Set(parts).size !== parts.length) throw new CtxError(`--tasks: a task is listed twice in "${s}"`);
  return parts;
}

/**
 * Load a task. The shape comes from the built-in name, else from the file: `.jsonl` → multiple
 * choice or LAMBADA by its fields; a text file whose second line is a bare integer → HellaSwag's
 * 6-line format; any other text → perplexity.
 */
export function loadTask(spec: string): Task {
  const { name, file } = taskFile(spec);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CtxError(`task ${name}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let data: TaskData;
  if (name === 'wikitext' || name === 'tinystories') data = { kind: 'perplexity', text };
  else if (name === 'hellaswag') data = { kind: 'multiple_choice', items: parseHellaswag(text, file) };
  else if (/\.jsonl$/i.test(file)) data = parseJsonl(text, file);
  else if (/^[ \t]*-?\d+[ \t]*$/.test(text.split('\n')[1] ?? '')) data = { kind: 'multiple_choice', items: parseHellaswag(text, file) };
  else data = { kind: 'perplexity', text };
  if (data.kind === 'perplexity' && data.text.trim() === '') throw new CtxError(`${file}: empty text`);
  return { name, file, data };
}

/** HellaSwag's text format: per task 6 lines (context, gold index 0–3, four endings). */
export function parseHellaswag(text: string, file: string): McItem[] {
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new CtxError(`${file}: no tasks`);
  if (lines.length % 6 !== 0) {
    throw new CtxError(`${file}:${lines.length}: ${lines.length} lines is not a whole number of 6-line tasks (context, gold index, 4 endings)`);
  }
  const items: McItem[] = [];
  for (let i = 0; i < lines.length; i += 6) {
    const g = lines[i + 1]!.trim();
    const gold = Number(g);
    if (!/^\d+$/.test(g) || gold > 3) throw new CtxError(`${file}:${i + 2}: expected the gold ending index 0–3, got "${lines[i + 1]}"`);
    items.push({ query: lines[i]!, choices: lines.slice(i + 2, i + 6), gold });
  }
  return items;
}

/** JSON lines: all `{query, choices, gold}` (multiple choice) or all `{context, continuation}` (LAMBADA). */
export function parseJsonl(text: string, file: string): TaskData {
  const mc: McItem[] = [];
  const lam: LambadaItem[] = [];
  let kind: 'multiple_choice' | 'lambada' | undefined;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const at = `${file}:${i + 1}`;
    let j: unknown;
    try {
      j = JSON.parse(line);
    } catch (e) {
      throw new CtxError(`${at}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new CtxError(`${at}: expected a JSON object`);
    const o = j as Record<string, unknown>;
    const k = 'query' in o || 'choices' in o ? 'multiple_choice' : 'context' in o ? 'lambada' : undefined;
    if (!k) throw new CtxError(`${at}: expected {query, choices, gold} or {context, continuation}`);
    if (kind && k !== kind) throw new CtxError(`${at}: a ${k === 'lambada' ? '{context, continuation}' : '{query, choices, gold}'} line in a file of ${kind === 'lambada' ? 'LAMBADA' : 'multiple-choice'} lines`);
    kind = k;
    if (k === 'multiple_choice') {
      if (typeof o.query !== 'string') throw new CtxError(`${at}: "query" must be a string`);
      const ch = o.choices;
      if (!Array.isArray(ch) || ch.length < 2 || ch.some((c) => typeof c !== 'string')) throw new CtxError(`${at}: "choices" must be a list of at least 2 strings`);
      const g = o.gold;
      if (typeof g !== 'number' || !Number.isInteger(g) || g < 0 || g >= ch.length) throw new CtxError(`${at}: "gold" must be an index into choices (0–${ch.length - 1}), got ${JSON.stringify(g)}`);
      mc.push({ query: o.query, choices: ch as string[], gold: g });
    } else {
      if (typeof o.context !== 'string') throw new CtxError(`${at}: "context" must be a string`);
      if (typeof o.continuation !== 'string' || o.continuation === '') throw new CtxError(`${at}: "continuation" must be a non-empty string`);
      lam.push({ context: o.context, continuation: o.continuation });
    }
  }
  if (!kind) throw new CtxError(`${file}: no tasks`);
  return kind === 'lambada' ? { kind, items: lam } : { kind, items: mc };
}

/**
 * The first `n` lines of the 20 agreement prompts: HellaSwag's first contexts (a fixed, public,
 * short-prompt source that calibration never reads).
 */
export function greedyPrompts(n: number): { source: string; prompts: string[] } {
  const file = resolve(evalDataDir(), TASK_FILES.hellaswag);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CtxError(`greedy agreement prompts: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  // only the first n tasks' lines are needed
  const head = text.split('\n').slice(0, 6 * n).join('\n') + '\n';
  const items = parseHellaswag(head, file);
  return { source: `the contexts of the first ${n} HellaSwag validation tasks (${TASK_FILES.hellaswag})`, prompts: items.slice(0, n).map((t) => t.query) };
}
