// An open-addressing hash table from a pair of int32 symbol ids to an int32 value: the memo of
// "which token do these two adjacent symbols make" in the SPM merge loop, where a JS Map of
// Maps is several times slower.

export class PairTable {
  private keyA: Int32Array;
  private keyB: Int32Array;
  private val: Int32Array;
  private used: Uint8Array;
  private mask: number;
  private count = 0;

  constructor(private readonly maxEntries = 1 << 20, capacity = 1 << 16) {
    this.keyA = new Int32Array(capacity);
    this.keyB = new Int32Array(capacity);
    this.val = new Int32Array(capacity);
    this.used = new Uint8Array(capacity);
    this.mask = capacity - 1;
  }

  private slot(a: number, b: number): number {
    let h = Math.imul(a, 0x9e3779b1) ^ Math.imul(b ^ (b >>> 15), 0x85ebca77);
    h ^= h >>> 13;
    return h & this.mask;
  }

  /** The value for (a, b), or `missing` if absent. */
  get(a: number, b: number, missing: number): number {
    const A = this.keyA, B = this.keyB, U = this.used;
    for (let i = this.slot(a, b); ; i = (i + 1) & this.mask) {
      if (!U[i]) return missing;
      if (A[i] === a && B[i] === b) return this.val[i]!;
    }
  }

  set(a: number, b: number, v: number): void {
    if (this.count >= this.maxEntries) this.clear();
    if ((this.count + 1) * 2 > this.used.length) this.grow();
    const A = this.keyA, B = this.keyB, U = this.used;
    let i = this.slot(a, b);
    for (; U[i]; i = (i + 1) & this.mask) {
      if (A[i] === a && B[i] === b) { this.val[i] = v; return; }
    }
    U[i] = 1; A[i] = a; B[i] = b; this.val[i] = v;
    this.count++;
  }

  clear(): void {
    this.used.fill(0);
    this.count = 0;
  }

  private grow(): void {
    const oa = this.keyA, ob = this.keyB, ov = this.val, ou = this.used;
    const cap = ou.length * 2;
    this.keyA = new Int32Array(cap);
    this.keyB = new Int32Array(cap);
    this.val = new Int32Array(cap);
    this.used = new Uint8Array(cap);
    this.mask = cap - 1;
    this.count = 0;
    for (let i = 0; i < ou.length; i++) if (ou[i]) this.set(oa[i]!, ob[i]!, ov[i]!);
  }
}
