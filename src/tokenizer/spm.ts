// SentencePiece-style tokenization of one piece of raw text, with llama.cpp's semantics:
// start from single characters, repeatedly merge the adjacent pair whose concatenation is the
// vocabulary token with the highest score (leftmost on ties), then emit each piece's token,
// or the <0xXX> byte tokens of its UTF-8 bytes when the piece is not in the vocabulary.
// The caller has already replaced spaces by ▁ and added any space prefix.

import { PairHeap } from './heap.js';
import { PairTable } from './pairtable.js';
import { utf8 } from './unicode.js';
import type { Vocab } from './vocab.js';

const PAIR_CACHE_LIMIT = 1 << 19;
/** symbol ids are token ids (>= 0) or -(code point + 1); this is neither */
const UNSEEN = -0x7fffffff;

export class SpmModel {
  private readonly heap = new PairHeap();
  private start = new Int32Array(256);
  private len = new Int32Array(256);
  private prev = new Int32Array(256);
  private next = new Int32Array(256);
  private sym = new Int32Array(256);
  /** (left symbol, right symbol) → the token they make, or -1 */
  private readonly pairs = new PairTable(PAIR_CACHE_LIMIT);
  private readonly bmpIds = new Int32Array(65536).fill(UNSEEN);
  private readonly astralIds = new Map<number, number>();
  /** token for each byte value: <0xXX>, else the one-character token, else unk (-1 if none) */
  private readonly byteToken = new Int32Array(256);

  constructor(private readonly vocab: Vocab) {
    for (let b = 0; b < 256; b++) {
      const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      let id = vocab.ids.get(hex);
      if (id === undefined && b < 0x80) id = vocab.ids.get(String.fromCharCode(b));
      this.byteToken[b] = id ?? vocab.special.unk;
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
    this.sym = new Int32Array(cap);
  }

  tokenize(text: string, out: number[]): void {
    if (text.length === 0) return;
    const ids = this.vocab.ids;
    const scores = this.vocab.scores;
    this.ensure(text.length);
    const start = this.start, len = this.len, prev = this.prev, next = this.next, sym = this.sym;

    // one symbol per code point; a symbol's id is its token, or -(code point + 1) if none
    let n = 0;
    for (let i = 0; i < text.length;) {
      const c = text.charCodeAt(i);
      const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
      const l = pair ? 2 : 1;
      start[n] = i; len[n] = l; prev[n] = n - 1; next[n] = n + 1;
      sym[n] = this.charSymbol(pair ? text.codePointAt(i)! : c, l === 1 ? text[i]! : text.substr(i, 2));
      n++;
      i += l;
    }
    next[n - 1] = -1;

    // the token two adjacent symbols make (a pure function of their ids, so it is cached)
    const pairs = this.pairs;
    const merged = (l: number, r: number): number => {
      const a = sym[l]!, b = sym[r]!;
      let id = pairs.get(a, b, UNSEEN);
      if (id === UNSEEN) {
        id = ids.get(text.substr(start[l]!, len[l]! + len[r]!)) ?? -1;
        pairs.set(a, b, id);
      }
      return id;
    };

    const heap = this.heap;
    heap.clear();
    const tryPair = (l: number, r: number) => {
      if (l < 0 || r < 0) return;
      const id = merged(l, r);
      if (id >= 0) heap.push(-scores[id]!, l, r, len[l]! + len[r]!);
    };
    for (let i = 1; i < n; i++) tryPair(i - 1, i);

    while (heap.pop()) {
      const l = heap.topLeft, r = heap.topRight;
      const ln = len[l]!, rn = len[r]!;
      if (ln === 0 || rn === 0 || ln + rn !== heap.topSize) continue; // stale
      sym[l] = merged(l, r);
      len[l] = ln + rn;
      len[r] = 0;
      const rnext = next[r]!;
      next[l] = rnext;
      if (rnext >= 0) prev[rnext] = l;
      tryPair(prev[l]!, l);
      tryPair(l, rnext);
    }

    for (let i = 0; i !== -1; i = next[i]!) {
      const id = sym[i]!;
      if (id >= 0) {
        out.push(id);
        continue;
      }
      // a character that is no token: its UTF-8 bytes as byte tokens
      for (const b of utf8(text.substr(start[i]!, len[i]!))) {
        const t = this.byteToken[b]!;
        if (t >= 0) out.push(t);
      }
    }
  }

  private charSymbol(cp: number, ch: string): number {
    if (cp < 65536) {
      let id = this.bmpIds[cp]!;
      if (id === UNSEEN) this.bmpIds[cp] = id = this.vocab.ids.get(ch) ?? -(cp + 1);
      return id;
    }
    let id = this.astralIds.get(cp);
    if (id === undefined) {
      id = this.vocab.ids.get(ch) ?? -(cp + 1);
      this.astralIds.set(cp, id);
    }
    return id;
  }
}
