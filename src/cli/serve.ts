// `ctxsparse serve`: the OpenAI-compatible server with batched decoding and the web playground.

import { basename } from 'node:path';
import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { findModel } from '../models/catalog.js';
import { Server } from '../serve/server.js';
import { addModelOptions, addSparseHeadOptions, addSparsityOption, int, num, openModel, sparseHeadFor, sparsityPolicy, type SparseHeadFlags } from './common.js';

interface ServeFlags extends SparseHeadFlags {
  model: string;
  tokenizer?: string;
  threads?: number;
  sparsity?: string;
  host: string;
  port: number;
  apiKey?: string;
  parallel: number;
  queue?: number;
  ctx?: number;
}

export function register(program: Command): void {
  const cmd = program
    .command('serve')
    .description('an OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics) with a web playground at /')
    .option('--host <addr>', 'address to bind', '127.0.0.1')
    .option('--port <n>', 'port (0 = any free one)', num('--port', (v) => Number.isInteger(v) && v >= 0 && v <= 65535, 'a port number 0..65535'), 8080)
    .option('--api-key <key>', 'require "Authorization: Bearer KEY" on every API request')
    .option('--parallel <n>', 'sequences decoded together in one batched step', int('--parallel', 1), 4)
    .option('--queue <n>', 'requests that may wait beyond --parallel before 429 (default 4 × --parallel)', int('--queue', 0))
    .option('--ctx <n>', "context per sequence in tokens (default: the model's, at most 2048)", int('--ctx', 2));
  addModelOptions(cmd);
  addSparsityOption(cmd);
  addSparseHeadOptions(cmd, 'auto');
  cmd.action(async (o: ServeFlags) => {
    const model = openModel(o);
    const sparse = sparsityPolicy(o.sparsity, model);
    const head = sparseHeadFor(o, model, true);
    const ctx = o.ctx ?? Math.min(model.config.ctxTrain, 2048);
    if (o.apiKey !== undefined && o.apiKey === '') throw new CtxError('--api-key: the key must not be empty');
    const modelId = findModel(o.model) ? o.model : basename(model.path).replace(/\.(gguf|bin)$/, '');
    const server = new Server({
      model, modelId, parallel: o.parallel, ctx,
      ...(o.queue !== undefined && { queue: o.queue }), ...(o.apiKey !== undefined && { apiKey: o.apiKey }),
      ...(sparse && { policy: sparse.policy }), ...(head && { sparseHead: head }),
    });
    let addr;
    try {
      addr = await server.listen(o.port, o.host);
    } catch (e) {
      throw new CtxError(`cannot listen on ${o.host}:${o.port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    process.stderr.write(`serving ${modelId} (${model.config.arch}, ${o.parallel} parallel, ctx ${ctx}${sparse ? `, sparsity ${sparse.file}` : ''}${head ? ', sparse head' : ''}) at http://${host}:${addr.port}/ (playground) and http://${host}:${addr.port}/v1\n`);
    // SIGTERM / SIGINT: stop accepting, finish what is in flight, then exit
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`${sig}: draining ${server.engine.active} active and ${server.engine.queued} queued requests\n`);
      void server.drain().then(() => {
        model.kernels.close?.();
        process.stderr.write('stopped\n');
        process.exit(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    await new Promise<void>(() => { /* until a signal */ });
  });
}
