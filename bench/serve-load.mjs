#!/usr/bin/env node
// Load on `ctxsparse serve`: N concurrent clients (1, 2, 4, 8 by default), each sending streamed chat
// requests back to back for a fixed time, on 127.0.0.1. The server runs as its own process
// (--parallel = the largest client count, so every client gets a slot). Per client count: requests/s,
// aggregate generated tok/s (and its ratio to one client), p50 / p99 time to first token and
// per-token latency (gaps between streamed tokens), errors, and the server's RSS before and after.
//
// Usage (after `npm run build`):
//   bench/serve-load [-m smollm2-135m-instruct] [-t 2] [-c 1,2,4,8] [-d 20] [-n 64] [--json]
// Requests generate exactly -n tokens (ignore_eos), temperature 0.7, a different seed and one of a
// few prompts each, so the work per request is fixed. Requests begun before the time is up finish
// and count; throughput is their tokens over the time until the last one ends.

import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'bin', 'ctxsparse.js');

const int = (flag, min) => (s) => {
  const v = Number(s);
  if (!Number.isInteger(v) || v < min) throw new Error(`${flag}: expected an integer ≥ ${min}, got "${s}"`);
  return v;
};
const program = new Command()
  .name('bench/serve-load')
  .option('-m, --model <name|path>', 'model to serve', 'smollm2-135m-instruct')
  .option('-t, --threads <n>', 'server threads', int('--threads', 1), 2)
  .option('-c, --clients <list>', 'concurrent clients, comma list', '1,2,4,8')
  .option('-d, --duration <s>', 'seconds of load per client count', int('--duration', 1), 20)
  .option('-n, --max-tokens <n>', 'tokens per answer', int('--max-tokens', 1), 64)
  .option('--sparsity <profile.json>', 'serve with this sparsity profile')
  .option('--json', 'print the results as one JSON object')
  .parse();
const o = program.opts();
const clientCounts = String(o.clients).split(',').map((x) => int('--clients', 1)(x.trim()));
const parallel = Math.max(...clientCounts);

const PROMPTS = [
  'Write a short story about a lighthouse keeper.',
  'Explain how a bicycle works to a child.',
  'List some ideas for a rainy afternoon.',
  'Describe the water cycle.',
  'What makes a good cup of tea?',
  'Tell me about the history of the printing press.',
  'Give advice for learning to cook.',
  'Describe a walk through a forest in autumn.',
];

function startServer() {
  const args = [CLI, 'serve', '-m', o.model, '--port', '0', '--threads', String(o.threads), '--parallel', String(parallel), '--ctx', '512'];
  if (o.sparsity) args.push('--sparsity', o.sparsity);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      err += d;
      const m = /at (http:\/\/[^ ]+)\/ \(playground\)/.exec(err);
      if (m) resolve({ child, base: m[1] });
    });
    child.on('exit', (code) => reject(new Error(`server exited (${code}): ${err}`)));
  });
}

async function rss(base) {
  const t = await (await fetch(`${base}/metrics`)).text();
  return Number(/^process_resident_memory_bytes (\d+)$/m.exec(t)[1]);
}

/** One streamed chat request; returns ttft (ms), token gaps (ms), tokens, or throws. */
async function request(base, i) {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: o.model, messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length] }], max_tokens: o.maxTokens,
      temperature: 0.7, seed: i, ignore_eos: true, stream: true, stream_options: { include_usage: true },
    }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let first = 0;
  let last = 0;
  const gaps = [];
  let tokens = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, k);
      buf = buf.slice(k + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.error) throw new Error(j.error.message);
      if (j.usage) tokens = j.usage.completion_tokens;
      const c = j.choices[0];
      if (c?.delta?.content) {
        const now = performance.now();
        if (!first) first = now;
        else gaps.push(now - last);
        last = now;
      }
    }
  }
  if (tokens !== o.maxTokens) throw new Error(`expected ${o.maxTokens} tokens, got ${tokens}`);
  return { ttft: first - t0, gaps, tokens };
}

function pct(xs, p) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function load(base, n) {
  const ttfts = [];
  const gaps = [];
  let tokens = 0;
  let requests = 0;
  let errors = 0;
  let seq = 0;
  const t0 = performance.now();
  const end = t0 + o.duration * 1000;
  await Promise.all(Array.from({ length: n }, async () => {
    while (performance.now() < end) {
      try {
        const r = await request(base, seq++);
        ttfts.push(r.ttft);
        gaps.push(...r.gaps);
        tokens += r.tokens;
        requests++;
      } catch (e) {
        errors++;
        process.stderr.write(`error: ${e.message}\n`);
      }
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  return {
    clients: n, seconds: Math.round(secs * 10) / 10, requests, errors,
    requests_per_second: requests / secs, tokens_per_second: tokens / secs,
    ttft_ms: { p50: pct(ttfts, 50), p99: pct(ttfts, 99) }, token_ms: { p50: pct(gaps, 50), p99: pct(gaps, 99) },
  };
}

const { child, base } = await startServer();
try {
  // one untimed request warms the server (kernels, template) before RSS and timing
  await request(base, 12345);
  const rssBefore = await rss(base);
  const results = [];
  for (const n of clientCounts) {
    results.push(await load(base, n));
    if (!o.json) process.stderr.write(`${n} client(s) done\n`);
  }
  const rssAfter = await rss(base);
  const one = results.find((r) => r.clients === 1)?.tokens_per_second;
  if (o.json) {
    process.stdout.write(JSON.stringify({ model: o.model, threads: o.threads, parallel, max_tokens: o.maxTokens, duration: o.duration, rss_before: rssBefore, rss_after: rssAfter, results }) + '\n');
  } else {
    const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
    console.log(`${new Date().toISOString()} · ${cpus()[0]?.model ?? 'cpu'} · ${o.model}, ${o.threads} threads, --parallel ${parallel}, ${o.maxTokens} tokens per answer, ${o.duration} s per row${o.sparsity ? `, sparsity ${o.sparsity}` : ''}`);
    console.log('| clients | requests/s | tok/s (all) | vs 1 client | TTFT p50 / p99 ms | per-token p50 / p99 ms | errors |');
    console.log('|---|---|---|---|---|---|---|');
    for (const r of results) {
      console.log(`| ${r.clients} | ${f(r.requests_per_second, 2)} | ${f(r.tokens_per_second)} | ${one ? f(r.tokens_per_second / one, 2) + '×' : '–'} | ${f(r.ttft_ms.p50, 0)} / ${f(r.ttft_ms.p99, 0)} | ${f(r.token_ms.p50)} / ${f(r.token_ms.p99)} | ${r.errors} |`);
    }
    console.log(`server RSS: ${(rssBefore / 1048576).toFixed(0)} MB before, ${(rssAfter / 1048576).toFixed(0)} MB after`);
  }
  if (results.some((r) => r.errors > 0)) process.exitCode = 1;
} finally {
  child.kill('SIGTERM');
}
