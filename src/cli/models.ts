// `ctxsparse models [--json]`: the catalog, and what of it is in the model cache.
import type { Command } from 'commander';
import { CATALOG, DEFAULT_MODEL, modelsDir, modelStatus, type ModelState, type ModelStatus } from '../models/catalog.js';
import { fmtBytes } from '../models/pull.js';

const STATE_LABEL: Record<ModelState, string> = {
  verified: 'pulled',
  unverified: 'pulled (unverified)',
  linked: 'linked (unverified)',
  corrupt: 'incomplete',
  'broken-link': 'broken link',
  missing: 'not pulled',
};

export function register(program: Command): void {
  program
    .command('models')
    .description('list the model catalog and which models are pulled')
    .option('--json', 'print JSON (one array of objects)')
    .action((opts: { json?: boolean }) => {
      const rows = CATALOG.map(modelStatus);
      if (opts.json) {
        process.stdout.write(JSON.stringify(rows.map(toJson), null, 2) + '\n');
        return;
      }
      const table = [
        ['NAME', 'ARCH', 'SIZE', 'STATUS', 'PATH'],
        ...rows.map((s) => [
          s.entry.name + (s.entry.name === DEFAULT_MODEL ? ' *' : ''),
          s.entry.architecture,
          fmtBytes(s.entry.size),
          STATE_LABEL[s.state],
          s.state === 'missing' ? '-' : s.path + (s.linkTarget ? ` -> ${s.linkTarget}` : ''),
        ]),
      ];
      const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
      for (const r of table) {
        process.stdout.write(r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ') + '\n');
      }
      process.stdout.write(`\n* default model. Cache: ${modelsDir()} (set CTXSPARSE_MODELS to move it). Get one with \`ctxsparse pull NAME\`.\n`);
    });
}

function toJson(s: ModelStatus): Record<string, unknown> {
  const e = s.entry;
  return {
    name: e.name,
    default: e.name === DEFAULT_MODEL,
    description: e.description,
    license: e.license,
    architecture: e.architecture,
    size: e.size,
    sha256: e.sha256,
    packages: e.packages.map((p) => `${p.name}==${p.version}`),
    pulled: s.pulled,
    verified: s.state === 'verified',
    status: s.state,
    path: s.path,
    ...(s.linkTarget !== undefined ? { linkTarget: s.linkTarget } : {}),
  };
}
