// `ctxsparse inspect`: a GGUF's metadata, tensor table, types and sizes (header only).

import type { Command } from 'commander';
import { CtxError } from '../errors.js';
import { describe, readGGUFHeader, type GGUFValue } from '../formats/gguf.js';
import { resolveModel } from '../models/catalog.js';
import { fmtBytes } from '../models/pull.js';

interface InspectFlags {
  model: string;
  json?: boolean;
  tensors?: boolean;
}

function jsonValue(v: GGUFValue): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (ArrayBuffer.isView(v)) return { array: v.constructor.name, length: (v as ArrayLike<unknown>).length };
  if (Array.isArray(v)) return v.length > 16 ? { array: 'string', length: v.length, first: v.slice(0, 8) } : v.map((x) => jsonValue(x as GGUFValue));
  return v;
}

export function register(program: Command): void {
  program
    .command('inspect')
    .description('show a GGUF file: metadata, tensor types and sizes, and (with --tensors) the tensor table')
    .option('-m, --model <name|path>', 'catalog name or path to a .gguf file', 'smollm2-135m-instruct')
    .option('--tensors', 'list every tensor (name, type, shape, bytes, offset)')
    .option('--json', 'print JSON')
    .action((o: InspectFlags) => {
      const path = resolveModel(o.model);
      if (path.endsWith('.bin')) throw new CtxError(`${path}: inspect reads GGUF files; this looks like a llama2.c checkpoint`);
      const h = readGGUFHeader(path);
      const byType = new Map<string, { count: number; bytes: number; params: number }>();
      for (const t of h.tensors) {
        const e = byType.get(t.type.name) ?? { count: 0, bytes: 0, params: 0 };
        e.count++;
        e.bytes += t.nBytes;
        e.params += t.nElements;
        byType.set(t.type.name, e);
      }
      const params = h.tensors.reduce((a, t) => a + t.nElements, 0);
      if (o.json) {
        process.stdout.write(JSON.stringify({
          path, version: h.version, file_size: h.fileSize, alignment: h.alignment, data_offset: h.dataOffset,
          parameters: params,
          metadata: Object.fromEntries([...h.metadata].map(([k, v]) => [k, jsonValue(v)])),
          types: Object.fromEntries(byType),
          tensors: h.tensors.map((t) => ({ name: t.name, type: t.type.name, dims: t.dims, bytes: t.nBytes, offset: t.offset })),
        }) + '\n');
        return;
      }
      const w = (s: string) => process.stdout.write(s + '\n');
      w(`${path}`);
      w(`GGUF v${h.version}, ${fmtBytes(h.fileSize)}, ${h.tensors.length} tensors, ${(params / 1e6).toFixed(1)}M parameters, alignment ${h.alignment}, data at ${h.dataOffset}`);
      w('');
      w('metadata:');
      const kw = Math.max(...[...h.metadata.keys()].map((k) => k.length));
      for (const [k, v] of h.metadata) {
        const text = typeof v === 'string' ? (v.length > 80 || v.includes('\n') ? `string(${v.length} chars)` : JSON.stringify(v)) : describe(v);
        w(`  ${k.padEnd(kw)}  ${(h.metadataTypes.get(k) ?? '').padEnd(14)} ${text}`);
      }
      w('');
      w('tensor types:');
      for (const [name, e] of [...byType].sort((a, b) => b[1].bytes - a[1].bytes)) {
        w(`  ${name.padEnd(5)} ${String(e.count).padStart(5)} tensors  ${(e.params / 1e6).toFixed(2).padStart(9)}M params  ${fmtBytes(e.bytes).padStart(10)}  ${((8 * e.bytes) / e.params).toFixed(2)} bits/weight`);
      }
      if (o.tensors) {
        w('');
        w('tensors:');
        const nw = Math.max(...h.tensors.map((t) => t.name.length));
        for (const t of h.tensors) {
          w(`  ${t.name.padEnd(nw)}  ${t.type.name.padEnd(5)} ${t.dims.join('x').padEnd(14)} ${fmtBytes(t.nBytes).padStart(10)}  @${t.offset}`);
        }
      }
    });
}
