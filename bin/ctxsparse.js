#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/ (built by `npm run build`, run on `npm ci` by `prepare`).
import { main } from '../dist/src/cli/main.js';
main(process.argv).catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
