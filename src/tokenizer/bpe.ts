// Byte-level BPE with llama.cpp's semantics: the raw text is split into pre-tokens, each
// pre-token's UTF-8 bytes are written as GPT-2 byte characters, and within each pre-token the
// adjacent pair with the lowest merge rank is merged (leftmost on ties) until no merge
// applies. Results are cached per pre-token, which is what makes long texts fast.

import { PairHeap } from './heap.js';
import { PreTokenizer } from './pretokenize.js';
import { byteEncode } from './unicode.js';
import type { Vocab } from './vocab.js';

const CACHE_LIMIT = 200_000;

export class BpeModel {
  private readonly ranks = new Map<string, number>();
  private readonly pre: PreTokenizer;
  private readonly cache = new Map<string, readonly number[]>();
  private readonly heap = new PairHeap();
  private start = new Int32Array(64);
  private len = new Int32Array(64);
  private prev = new Int32Array(64);
  private next = new Int32Array(64);

  constructor(private readonly vocab: Vocab) {
    const merges = vocab.merges;
    for (let i = 0; i < merges.length; i++) {
      const m = merges[i]!;
      // split at the first space after the first character, as llama.cpp does
      const sp = m.indexOf(' ', 1);
      const key = sp < 0 ? ' ' : m.slice(0, sp) + ' ' + m.slice(sp + 1);
      if (!this.ranks.has(key)) this.ranks.set(key, i);
    }
    this.pre = new PreTokenizer(vocab.pre!.patterns);
  }

  /** Tokens of one piece of raw text (no special tokens in it). */
  tokenize(text: string, out: number[]): void {
    for (const word of this.pre.split(text)) {
      let ids = this.cache.get(word);
      if (ids === undefined) {
        ids = this.word(byteEncode(word));
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(word, ids);
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]!);
    }
  }

  private ensure(n: number): void {
    if (n <= this.start.length) return;
    let cap = this.start.length;
    while (cap < n) cap *= 2;
    this.start = new Int32Array(cap);
    this.len = new Int32Array(cap);
    this.prev = new Int32Array(cap);
    this.next = new Int32Array(cap);
  }

  /** BPE of one byte-encoded pre-token (every character is one byte, one UTF-16 unit). */
  private word(w: string): number[] {
    const ids = this.vocab.ids;
    if (this.vocab.ignoreMerges) {
      const id = ids.get(w);
      if (id !== undefined) return [id];
    }
    const n = w.length;
    this.ensure(n);
    const start = this.start, len = this.len, prev = this.prev, next = this.next;
    for (let i = 0; i < n; i++) { start[i] = i; len[i] = 1; prev[i] = i - 1; next[i] = i + 1; }
    next[n - 1] = -1;

    const ranks = this.ranks;
    const heap = this.heap;
    heap.clear();
    const tryPair = (l: number, r: number) => {
      if (l < 0 || r < 0) return;
      const sl = start[l]!, ll = len[l]!, rl = len[r]!;
      const rank = ranks.get(w.substr(sl, ll) + ' ' + w.substr(sl + ll, rl));
      if (rank === undefined) return;
      heap.push(rank, l, r, ll + rl);
    };
    for (let i = 1; i < n; i++) tryPair(i - 1, i);

    while (heap.pop()) {
      const l = heap.topLeft, r = heap.topRight;
      const ln = len[l]!, rn = len[r]!;
      if (ln === 0 || rn === 0 || ln + rn !== heap.topSize) continue; // outdated pair
      len[l] = ln + rn;
      len[r] = 0;
      const rnext = next[r]!;
      next[l] = rnext;
      if (rnext >= 0) prev[rnext] = l;
      tryPair(prev[l]!, l);
      tryPair(l, rnext);
    }

    const out: number[] = [];
    for (let i = 0; i !== -1; i = next[i]!) {
      const piece = w.substr(start[i]!, len[i]!);
      const id = ids.get(piece);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // not a token: llama.cpp looks up each UTF-8 byte of the piece on its own, which only
      // ever finds the ASCII characters
      for (let j = 0; j < piece.length; j++) {
        const c = piece.charCodeAt(j);
        if (c < 0x80) {
          const b = ids.get(piece[j]!);
          if (b !== undefined) out.push(b);
        }
      }
    }
    return out;
  }
}
