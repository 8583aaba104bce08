// Lockstep worker threads over the kernels' shared memory.
//
// Each worker instantiates the same compiled module on the same WebAssembly.Memory (the weights
// are never copied) and waits for work on a small control block. A dispatch is: the host writes a
// task list into the memory, bumps the generation counter, runs its own share (thread 0), and
// spins until every worker has counted itself done. Workers spin on the counter between
// dispatches and sleep on Atomics.wait only after a while without work, so a decode step costs a
// few hundred nanoseconds of synchronisation per kernel call, not a message round trip.

import { Worker } from 'node:worker_threads';

// control block (Int32Array over its own SharedArrayBuffer)
export const GEN = 0;      // dispatch generation, bumped by the host
export const DONE = 1;     // workers finished with the current generation
export const TABLE = 2;    // task list address
export const NTASKS = 3;   // task count
export const SLEEPERS = 4; // workers blocked in Atomics.wait
export const EXIT = 5;     // set before the last bump: workers leave their loop
export const FAILED = 6;   // a worker's run() threw; its message is in the worker's error event
export const HOST_WAITS = 7; // the host sleeps on DONE: the last worker to finish wakes it
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
 * Spins of the host on DONE before it sleeps. On an idle machine a dispatch finishes within a few
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
}

export class Pool {
  private readonly ctrl: Int32Array;
  private readonly workers: Worker[] = [];
  private failure: Error | null = null;
  private closed = false;

  /** `run0(table, nTasks)` is the host's own share (thread 0 of nth). */
  constructor(module: object, memory: object, readonly nth: number, f16tab: number, relaxed: boolean,
    private readonly run0: (table: number, nTasks: number) => void) {
    const sab = new SharedArrayBuffer(CTRL_BYTES);
    this.ctrl = new Int32Array(sab);
    const url = new URL('./worker.js', import.meta.url);
    for (let tid = 1; tid < nth; tid++) {
      const init: PoolInit = { module, memory, ctrl: sab, tid, nth, f16tab, relaxed };
      const w = new Worker(url, { workerData: init });
      w.on('error', (e) => {
        this.failure ??= e;
        Atomics.store(this.ctrl, FAILED, 1);
      });
      w.unref(); // an idle pool never keeps the process alive
      this.workers.push(w);
    }
  }

  /** Run a task list on all threads; returns when every thread is done. */
  run(table: number, nTasks: number): void {
    if (this.closed) throw new Error('kernel thread pool: used after close()');
    const c = this.ctrl;
    c[TABLE] = table;
    c[NTASKS] = nTasks;
    Atomics.store(c, DONE, 0);
    Atomics.add(c, GEN, 1);
    if (Atomics.load(c, SLEEPERS) > 0) Atomics.notify(c, GEN);
    this.run0(table, nTasks);
    const want = this.nth - 1;
    let spins = 0;
    let since = 0;
    for (let d = Atomics.load(c, DONE); d < want; d = Atomics.load(c, DONE)) {
      if (Atomics.load(c, FAILED)) this.fail();
      if (++spins > HOST_SPINS) {
        Atomics.store(c, HOST_WAITS, 1);
        // re-checked under the flag: a worker that finished in between has seen it or left DONE changed
        Atomics.wait(c, DONE, d, 1);
        Atomics.store(c, HOST_WAITS, 0);
        if (Atomics.load(c, STARTED) < want) {
          since ||= performance.now();
          if (performance.now() - since > START_TIMEOUT_MS) this.fail(`${want - Atomics.load(c, STARTED)} of ${want} worker threads did not start within ${START_TIMEOUT_MS / 1000} s`);
        }
      }
    }
    if (Atomics.load(c, FAILED)) this.fail();
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
