// OpenAI API shapes: checking request bodies (wrong types and ranges are 400s that name the
// field) and the error object every failure is reported with.

import type { SamplerOptions } from '../generate/sampler.js';

/** An HTTP error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type = 'invalid_request_error',
    readonly param: string | null = null, readonly code: string | null = null, readonly headers: Record<string, string> = {}) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null): ApiError => new ApiError(400, message, 'invalid_request_error', param, code);

type Json = Record<string, unknown>;

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Field readers: undefined (or null) when absent, a 400 naming the field when of the wrong type or range. */
export const field = {
  str(o: Json, k: string): string | undefined {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw badRequest(`'${k}' must be a string, got ${typeName(v)}`, k, 'invalid_type');
    return v;
  },
  bool(o: Json, k: string): boolean | undefined {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw badRequest(`'${k}' must be a boolean, got ${typeName(v)}`, k, 'invalid_type');
    return v;
  },
  num(o: Json, k: string, min: number, max: number): number | undefined {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`'${k}' must be a number, got ${typeName(v)}`, k, 'invalid_type');
    if (v < min || v > max) throw badRequest(`'${k}' must be between ${min} and ${max}, got ${v}`, k, 'invalid_value');
    return v;
  },
  int(o: Json, k: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v)) throw badRequest(`'${k}' must be an integer, got ${typeName(v) === 'number' ? v : typeName(v)}`, k, 'invalid_type');
    if (v < min || v > max) throw badRequest(`'${k}' must be ≥ ${min}${max < Number.MAX_SAFE_INTEGER ? ` and ≤ ${max}` : ''}, got ${v}`, k, 'invalid_value');
    return v;
  },
  obj(o: Json, k: string): Json | undefined {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    if (typeName(v) !== 'object') throw badRequest(`'${k}' must be an object, got ${typeName(v)}`, k, 'invalid_type');
    return v as Json;
  },
};

/** The parsed JSON body: an object, or a 400. */
export function parseBody(text: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`, null, 'invalid_json');
  }
  if (typeName(v) !== 'object') throw badRequest(`the request body must be a JSON object, got ${typeName(v)}`, null, 'invalid_json');
  return v as Json;
}

/** `stop`: a string or up to 4 strings. */
export function stopField(o: Json): string[] {
  const v = o.stop;
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return v === '' ? [] : [v];
  if (Array.isArray(v) && v.every((s) => typeof s === 'string')) {
    if (v.length > 4) throw badRequest(`'stop' takes at most 4 sequences, got ${v.length}`, 'stop', 'invalid_value');
    return (v as string[]).filter((s) => s !== '');
  }
  throw badRequest(`'stop' must be a string or an array of strings, got ${typeName(v)}`, 'stop', 'invalid_type');
}

/**
 * Sampling settings. OpenAI's defaults where the API has the setting (temperature 1, top_p 1);
 * llama.cpp server's for the extensions `top_k` (40), `min_p` (0.05) and `repeat_penalty` (1).
 */
export function samplingFields(o: Json): SamplerOptions {
  const temperature = field.num(o, 'temperature', 0, 2) ?? 1;
  const topP = field.num(o, 'top_p', 0, 1) ?? 1;
  const topK = field.int(o, 'top_k', 0) ?? 40;
  const minP = field.num(o, 'min_p', 0, 1) ?? 0.05;
  const repeatPenalty = field.num(o, 'repeat_penalty', 0.01, 10) ?? 1;
  const seed = field.int(o, 'seed', Number.MIN_SAFE_INTEGER);
  if (topP === 0) throw badRequest(`'top_p' must be greater than 0`, 'top_p', 'invalid_value');
  return { temperature, topP, topK, minP, repeatPenalty, ...(seed !== undefined && { seed: seed >>> 0 }) };
}

/** `n`: only 1 is supported (several choices per prompt are not). */
export function checkN(o: Json): void {
  const n = field.int(o, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw badRequest(`'n' must be 1 on this server (one choice per prompt), got ${n}`, 'n', 'invalid_value');
}

export interface ChatMessageIn {
  role: string;
  content: string;
}

/** `messages`: [{role, content}], content a string or an array of text parts. */
export function messagesField(o: Json): ChatMessageIn[] {
  const v = o.messages;
  if (v === undefined || v === null) throw badRequest(`'messages' is required`, 'messages', 'missing_required_parameter');
  if (!Array.isArray(v)) throw badRequest(`'messages' must be an array, got ${typeName(v)}`, 'messages', 'invalid_type');
  if (v.length === 0) throw badRequest(`'messages' must hold at least one message`, 'messages', 'invalid_value');
  return v.map((m: unknown, i) => {
    const p = `messages[${i}]`;
    if (typeName(m) !== 'object') throw badRequest(`'${p}' must be an object, got ${typeName(m)}`, p, 'invalid_type');
    const mo = m as Json;
    const role = mo.role;
    if (typeof role !== 'string' || !['system', 'developer', 'user', 'assistant', 'tool'].includes(role)) {
      throw badRequest(`'${p}.role' must be one of system, developer, user, assistant, tool; got ${JSON.stringify(role)}`, `${p}.role`, 'invalid_value');
    }
    const c = mo.content;
    let content: string;
    if (typeof c === 'string') content = c;
    else if (c === null || c === undefined) content = '';
    else if (Array.isArray(c)) {
      content = c.map((part: unknown, j) => {
        const po = part as Json;
        if (typeName(part) !== 'object' || po.type !== 'text' || typeof po.text !== 'string') {
          throw badRequest(`'${p}.content[${j}]' must be a text part {"type": "text", "text": "..."}`, `${p}.content`, 'invalid_type');
        }
        return po.text;
      }).join('');
    } else throw badRequest(`'${p}.content' must be a string or an array of text parts, got ${typeName(c)}`, `${p}.content`, 'invalid_type');
    // the GGUF chat templates know 'system', not OpenAI's newer 'developer'
    return { role: role === 'developer' ? 'system' : role, content };
  });
}

/** `prompt` of /v1/completions: a string, strings, token ids, or lists of token ids → one entry per prompt. */
export function promptField(o: Json, vocab: number): (string | number[])[] {
  const v = o.prompt;
  if (v === undefined || v === null) throw badRequest(`'prompt' is required`, 'prompt', 'missing_required_parameter');
  const ids = (a: unknown[], where: string): number[] => a.map((t, i) => {
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= vocab) {
      throw badRequest(`'${where}[${i}]' must be a token id in 0..${vocab - 1}, got ${JSON.stringify(t)}`, 'prompt', 'invalid_value');
    }
    return t;
  });
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) {
    if (v.length === 0) throw badRequest(`'prompt' must not be empty`, 'prompt', 'invalid_value');
    if (v.every((x) => typeof x === 'string')) return v as string[];
    if (v.every((x) => typeof x === 'number')) return [ids(v, 'prompt')];
    if (v.every((x) => Array.isArray(x))) return v.map((x, i) => ids(x as unknown[], `prompt[${i}]`));
  }
  throw badRequest(`'prompt' must be a string, an array of strings, an array of token ids or an array of arrays of token ids`, 'prompt', 'invalid_type');
}
