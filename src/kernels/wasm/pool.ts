// Lockstep worker threads over the kernels' shared memory.
//
// Each worker instantiates the same compiled module on the same WebAssembly.Memory (the weights
// are never copied) and waits for work on a small control block. A dispatch is: the host writes a
// task list into the memory, sets the claim counters (asm/kernels.ts run) for the new generation,
// bumps the generation counter, runs its share (thread 0: its own range, then the claimed rest,
// then whatever the others have not started), and spins until the list's units are done. Workers
// spin on the counter between dispatches and sleep on Atomics.wait only after a while without
// work, so a decode step costs a few hundred nanoseconds of synchronisation per kernel call, not a
// message round trip. The host does not wait for a worker that has not started: on a machine
// where another thread holds a core now and then, that worker's range goes to the host instead of
// holding the dispatch up for the time slice (a worker that finds its range taken sleeps sooner
// the next time, so that it does not take the host's core to spin).

import { Worker } from 'node:worker_threads';

// control block (Int32Array over its own SharedArrayBuffer)
export const GEN = 0;      // dispatch generation, bumped by the host
export const TABLE = 2;    // task list address
export const NTASKS = 3;   // task count
export const SLEEPERS = 4; // workers blocked in Atomics.wait
export const EXIT = 5;     // set before the last bump: workers leave their loop
export const FAILED = 6;   // a worker's run() threw; its message is in the worker's error event
export const HOST_WAITS = 7; // the host sleeps on the units done: a worker that finishes its part wakes it
export const STARTED = 8;  // workers that have instantiated the module and serve
/** bytes [MSG_AT, MSG_AT + MSG_BYTES) of the control block: the first failing worker's message (UTF-8, NUL-padded) */
export const MSG_AT = 64;
export const MSG_BYTES = 448;
const CTRL_BYTES = MSG_AT + MSG_BYTES;
/**
 * How long the host waits for workers that have not started yet before it gives up: a worker
 * that dies before serving cannot say so any other way (its 'error' event needs the host's event
 * loop, which a synchronous dispatch blocks).
 */
const START_TIMEOUT_MS = 60_000;

/**
 * Spins of the host on the units done before it sleeps. On an idle machine a dispatch finishes within a few
 * microseconds and the host never sleeps; on a machine with more runnable threads than cores, a
 * spinning host would burn the time slice the worker it waits for needs.
 */
const HOST_SPINS = 1 << 15;

export interface PoolInit {
  readonly module: object;
  readonly memory: object;
  readonly ctrl: SharedArrayBuffer;
  readonly tid: number;
  readonly nth: number;
  readonly f16tab: number;
  readonly relaxed: boolean;
  /** the claims block's byte address in the memory (asm/kernels.ts run) */
  readonly claims: number;
}

// the claims block's words (asm/kernels.ts)
const C_DONE = 0;
const C_TOTAL = 1;
const C_REST = 2;
const C_OWN = 3;
const TAG_SHIFT = 20;
const INDEX_MASK = (1 << TAG_SHIFT) - 1;

export class Pool {
  private readonly ctrl: Int32Array;
  private readonly workers: Worker[] = [];
  private failure: Error | null = null;
  private closed = false;

  /** the claims block (i32 words from `at`) */
  private readonly claims: Int32Array;
  private readonly at: number;
  private started = false;

  /** `run0(table, nTasks, gen)` is the host's own share (thread 0 of nth); claims: the claims block's byte address in the memory. */
  constructor(module: object, memory: object, readonly nth: number, f16tab: number, relaxed: boolean, claims: number,
    private readonly run0: (table: number, nTasks: number, gen: number) => number) {
    const sab = new SharedArrayBuffer(CTRL_BYTES);
    this.ctrl = new Int32Array(sab);
    // (a shared memory's buffer stays valid when it grows: this view keeps seeing the block)
    this.claims = new Int32Array((memory as { buffer: SharedArrayBuffer }).buffer);
    this.at = claims >>> 2;
    const url = new URL('./worker.js', import.meta.url);
    for (let tid = 1; tid < nth; tid++) {
      const init: PoolInit = { module, memory, ctrl: sab, tid, nth, f16tab, relaxed, claims };
      const w = new Worker(url, { workerData: init });
      w.on('error', (e) => {
        this.failure ??= e;
        Atomics.store(this.ctrl, FAILED, 1);
      });
      w.unref(); // an idle pool never keeps the process alive
      this.workers.push(w);
    }
  }

  /** Run a task list on all threads; returns when its units are done. */
  run(table: number, nTasks: number): void {
    if (this.closed) throw new Error('kernel thread pool: used after close()');
    const c = this.ctrl, m = this.claims, at = this.at;
    const gen = (c[GEN]! + 1) | 0;
    const tag = (gen & ((1 << (32 - TAG_SHIFT)) - 1)) << TAG_SHIFT;
    // the counters for this generation first: a worker still on an earlier one that reads the new
    // table finds them tagged with another dispatch and takes nothing
    Atomics.store(m, at + C_DONE, 0);
    this.setCounters(tag);
    c[TABLE] = table;
    c[NTASKS] = nTasks;
    Atomics.store(c, GEN, gen);
    if (Atomics.load(c, SLEEPERS) > 0) Atomics.notify(c, GEN);
    this.run0(table, nTasks, gen);
    const total = m[at + C_TOTAL]!;
    let spins = 0;
    for (let d = Atomics.load(m, at + C_DONE); d < total; d = Atomics.load(m, at + C_DONE)) {
      if (Atomics.load(c, FAILED)) this.fail();
      if (++spins > HOST_SPINS) {
        Atomics.store(c, HOST_WAITS, 1);
        // re-checked under the flag: a worker that finished in between has seen it or left the count changed
        Atomics.wait(m, at + C_DONE, d, 1);
        Atomics.store(c, HOST_WAITS, 0);
      }
    }
    // closed: a worker that comes late to this generation (its counters still carry its tag while
    // the host writes the next list) finds nothing left to take, whatever it reads of the list
    this.setCounters(tag | INDEX_MASK);
    if (!this.started) this.awaitStart();
    if (Atomics.load(c, FAILED)) this.fail();
  }

  /** The claim counters (the rest's and each thread's own) set to v: a tag and the next index. */
  private setCounters(v: number): void {
    Atomics.store(this.claims, this.at + C_REST, v);
    for (let t = 0; t < this.nth; t++) Atomics.store(this.claims, this.at + C_OWN + t, v);
  }

  /**
   * The first dispatches wait until every worker serves (or one failed): a worker that dies while
   * it starts could not say so otherwise, and the host may have done all the work itself.
   */
  private awaitStart(): void {
    const c = this.ctrl, want = this.nth - 1;
    const since = performance.now();
    while (Atomics.load(c, STARTED) < want) {
      if (Atomics.load(c, FAILED)) this.fail();
      Atomics.wait(c, STARTED, Atomics.load(c, STARTED), 1);
      if (performance.now() - since > START_TIMEOUT_MS) this.fail(`${want - Atomics.load(c, STARTED)} of ${want} worker threads did not start within ${START_TIMEOUT_MS / 1000} s`);
    }
    this.started = true;
  }

  private fail(why?: string): never {
    const bytes = new Uint8Array(this.ctrl.buffer, MSG_AT, MSG_BYTES);
    const end = bytes.indexOf(0);
    const shared = Buffer.from(bytes.slice(0, end < 0 ? MSG_BYTES : end)).toString('utf8');
    this.close();
    throw new Error(`kernel thread pool: ${why ?? `a worker failed: ${this.failure?.message ?? (shared || 'unknown error')}`}`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, EXIT, 1);
    Atomics.add(this.ctrl, GEN, 1);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) void w.terminate();
  }
}
