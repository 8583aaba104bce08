// A kernel thread: the same wasm module on the host's shared memory, running its share of each
// task list in lockstep with the host (see pool.ts for the protocol).

import { setFlagsFromString } from 'node:v8';
import { workerData } from 'node:worker_threads';
import { EXIT, FAILED, GEN, HOST_WAITS, MSG_AT, MSG_BYTES, NTASKS, SLEEPERS, STARTED, TABLE, type PoolInit } from './pool.js';

interface WasmApi {
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { readonly exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/**
 * Spins on the generation counter before sleeping (~0.1 ms): the dispatches of a decode step come
 * back far sooner; between tokens a worker may sleep (a wake-up costs ~15 µs), and on a machine
 * with more runnable threads than cores it does not burn others' time for long.
 */
const SPINS = 1 << 17;
/**
 * Spins after a dispatch whose range the others had already taken (this thread came late: the
 * system had given its core to another thread): it sleeps sooner, so that it does not take the
 * core the host may be sharing with it just to spin.
 */
const LATE_SPINS = 1 << 10;
/** run()'s result bit for that (asm/kernels.ts LATE) */
const LATE = 1 << 30;

const init = workerData as PoolInit;
const c = new Int32Array(init.ctrl);
// the claims block's count of units done (asm/kernels.ts C_DONE), which the host sleeps on
const mem = new Int32Array((init.memory as { buffer: SharedArrayBuffer }).buffer);
const doneAt = init.claims >>> 2;

/** Tell the host this worker failed (it may be blocked in a dispatch, deaf to 'error' events): the message, the flag, a wake-up. */
function report(e: unknown): void {
  const msg = new TextEncoder().encode(`thread ${init.tid}: ${e instanceof Error ? e.message : String(e)}`.slice(0, MSG_BYTES / 4));
  const area = new Uint8Array(init.ctrl, MSG_AT, MSG_BYTES);
  if (Atomics.compareExchange(c, FAILED, 0, 1) === 0) area.set(msg.subarray(0, MSG_BYTES - 1));
  Atomics.notify(mem, doneAt);
}

type Exports = { setF16Table(p: number, fill: number): void; run(table: number, nTasks: number, tid: number, nth: number, claims: number, gen: number): number };
let ex: Exports;
try {
  if (init.relaxed) setFlagsFromString('--experimental-wasm-relaxed-simd');
  ex = new WA.Instance(init.module, { env: { memory: init.memory } }).exports as unknown as Exports;
  ex.setF16Table(init.f16tab, 0);
} catch (e) {
  report(e);
  throw e;
}

/** The worker's life: wait for a generation, run its share, wake the host if it sleeps (a function, so that the engine optimises the loop). */
function serve(): void {
  let seen = 0;
  let budget = SPINS;
  Atomics.add(c, STARTED, 1);
  Atomics.notify(c, STARTED);
  for (;;) {
    let g = Atomics.load(c, GEN);
    let spins = 0;
    while (g === seen) {
      if (++spins > budget) {
        Atomics.add(c, SLEEPERS, 1);
        Atomics.wait(c, GEN, seen);
        Atomics.sub(c, SLEEPERS, 1);
        spins = 0;
      }
      g = Atomics.load(c, GEN);
    }
    seen = g;
    if (Atomics.load(c, EXIT)) return;
    let r = 0;
    try {
      r = ex.run(c[TABLE]!, c[NTASKS]!, init.tid, init.nth, init.claims, g);
    } catch (e) {
      report(e);
      throw e;
    }
    budget = r & LATE ? LATE_SPINS : SPINS;
    if (Atomics.load(c, HOST_WAITS)) Atomics.notify(mem, doneAt);
  }
}
serve();
