// A binary min-heap of symbol pairs for the merge loops of SPM and BPE: ordered by `key`
// (SPM: minus the score, BPE: the merge rank), ties going to the leftmost pair. Parallel
// typed arrays, reused across calls, so merging allocates nothing per pair.

export class PairHeap {
  private key = new Float64Array(64);
  private left = new Int32Array(64);
  private right = new Int32Array(64);
  private size = new Int32Array(64);
  length = 0;

  // fields of the last popped entry
  topKey = 0;
  topLeft = 0;
  topRight = 0;
  topSize = 0;

  clear(): void {
    this.length = 0;
  }

  private grow(): void {
    const n = this.key.length * 2;
    const k = new Float64Array(n); k.set(this.key); this.key = k;
    const l = new Int32Array(n); l.set(this.left); this.left = l;
    const r = new Int32Array(n); r.set(this.right); this.right = r;
    const s = new Int32Array(n); s.set(this.size); this.size = s;
  }

  push(key: number, left: number, right: number, size: number): void {
    if (this.length === this.key.length) this.grow();
    const K = this.key, L = this.left, R = this.right, S = this.size;
    let i = this.length++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pk = K[p]!;
      if (pk < key || (pk === key && L[p]! <= left)) break;
      K[i] = pk; L[i] = L[p]!; R[i] = R[p]!; S[i] = S[p]!;
      i = p;
    }
    K[i] = key; L[i] = left; R[i] = right; S[i] = size;
  }

  /** Removes the smallest entry into top*; false when empty. */
  pop(): boolean {
    if (this.length === 0) return false;
    const K = this.key, L = this.left, R = this.right, S = this.size;
    this.topKey = K[0]!; this.topLeft = L[0]!; this.topRight = R[0]!; this.topSize = S[0]!;
    const n = --this.length;
    if (n === 0) return true;
    const key = K[n]!, left = L[n]!, right = R[n]!, size = S[n]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const c2 = c + 1;
      if (c2 < n && (K[c2]! < K[c]! || (K[c2] === K[c] && L[c2]! < L[c]!))) c = c2;
      const ck = K[c]!;
      if (key < ck || (key === ck && left <= L[c]!)) break;
      K[i] = ck; L[i] = L[c]!; R[i] = R[c]!; S[i] = S[c]!;
      i = c;
    }
    K[i] = key; L[i] = left; R[i] = right; S[i] = size;
    return true;
  }
}
