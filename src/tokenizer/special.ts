// Splitting special tokens out of raw text before the model's tokenizer sees it.
//
// llama.cpp's rule: take the special tokens longest text first; for each, scan every piece of
// raw text left to right and cut out each occurrence. So a longer token always wins over a
// shorter one, wherever they overlap. Control and unknown tokens take part only when special
// text is parsed; user-defined tokens always do. Tokens with the lstrip/rstrip attribute eat
// the ASCII whitespace beside them.
//
// Here all occurrences are found in one pass with a trie, then accepted in llama.cpp's order
// (token rank, then position) unless they overlap text already taken.

import { Attr } from './types.js';
import { isCSpace } from './unicode.js';
import type { Vocab } from './vocab.js';

/** A raw-text piece (string) or a token id (number). */
export type Fragment = string | number;

export class SpecialSplitter {
  private readonly tokenOfRank: Int32Array;
  private readonly lenOfRank: Int32Array;
  private readonly stripOfRank: Uint8Array; // bit 1: lstrip, bit 2: rstrip
  private readonly firstUnit = new Uint8Array(65536);
  private readonly children: Array<Map<number, number>> = [new Map()];
  private readonly terminal: number[] = [-1];

  constructor(vocab: Vocab, parseSpecial: boolean) {
    const ranked = vocab.specialTokens.filter((id) => parseSpecial || !(vocab.attrs[id]! & (Attr.CONTROL | Attr.UNKNOWN)));
    this.tokenOfRank = Int32Array.from(ranked);
    this.lenOfRank = new Int32Array(ranked.length);
    this.stripOfRank = new Uint8Array(ranked.length);
    ranked.forEach((id, rank) => {
      const text = vocab.texts[id]!;
      const a = vocab.attrs[id]!;
      this.lenOfRank[rank] = text.length;
      this.stripOfRank[rank] = (a & Attr.LSTRIP ? 1 : 0) | (a & Attr.RSTRIP ? 2 : 0);
      this.firstUnit[text.charCodeAt(0)] = 1;
      let node = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        let next = this.children[node]!.get(c);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminal.push(-1);
          this.children[node]!.set(c, next);
        }
        node = next;
      }
      // the same text twice: the first in order is the one llama.cpp cuts out
      if (this.terminal[node] === -1) this.terminal[node] = rank;
    });
  }

  get empty(): boolean {
    return this.tokenOfRank.length === 0;
  }

  split(text: string): Fragment[] {
    const n = text.length;
    if (n === 0) return [];
    if (this.empty) return [text];

    // every occurrence of every special token, in position order
    const occPos: number[] = [];
    const occRank: number[] = [];
    const first = this.firstUnit, children = this.children, terminal = this.terminal;
    for (let i = 0; i < n; i++) {
      if (!first[text.charCodeAt(i)]) continue;
      let node = 0;
      for (let j = i; j < n; j++) {
        const next = children[node]!.get(text.charCodeAt(j));
        if (next === undefined) break;
        node = next;
        const r = terminal[node]!;
        if (r >= 0) { occPos.push(i); occRank.push(r); }
      }
    }
    if (occPos.length === 0) return [text];

    const order = Array.from(occPos.keys()).sort((a, b) => occRank[a]! - occRank[b]! || occPos[a]! - occPos[b]!);
    const taken = new Uint8Array(n); // 0 raw text, 1 token, 2 whitespace stripped away
    const tokenAt = new Map<number, number>(); // position → rank
    for (const k of order) {
      const p = occPos[k]!, r = occRank[k]!, len = this.lenOfRank[r]!;
      let free = true;
      for (let q = p; q < p + len; q++) if (taken[q]) { free = false; break; }
      if (!free) continue;
      taken.fill(1, p, p + len);
      tokenAt.set(p, r);
      const strip = this.stripOfRank[r]!;
      if (strip & 1) for (let q = p - 1; q >= 0 && taken[q] === 0 && isCSpace(text.charCodeAt(q)); q--) taken[q] = 2;
      if (strip & 2) for (let q = p + len; q < n && taken[q] === 0 && isCSpace(text.charCodeAt(q)); q++) taken[q] = 2;
    }

    const out: Fragment[] = [];
    let runStart = -1;
    for (let i = 0; i < n;) {
      if (taken[i] === 0) {
        if (runStart < 0) runStart = i;
        i++;
        continue;
      }
      if (runStart >= 0) { out.push(text.slice(runStart, i)); runStart = -1; }
      if (taken[i] === 1) {
        const r = tokenAt.get(i)!;
        out.push(this.tokenOfRank[r]!);
        i += this.lenOfRank[r]!;
      } else {
        i++;
      }
    }
    if (runStart >= 0) out.push(runStart === 0 ? text : text.slice(runStart));
    return out;
  }
}
