#!/usr/bin/env -S node --max-semi-space-size=1
// Thin launcher: the CLI lives in dist/ (built by `npm run build`, run on `npm ci` by `prepare`).
// --max-semi-space-size=1 (MB): V8's young generation otherwise grows to 16 MB semi-spaces while
// the tokenizer's tables are built and stays committed: ~30 MB of peak RSS (Qwen2.5-0.5B decoding
// 610 -> 582 MB, Gemma-3-270M 392 -> 360 MB), for no decode speed; tokenizing a whole text is up to
// a third slower. Node reads the flag only at start, so it lives here (`node bin/ctxsparse.js`
// runs without it; bench/vs-llama-cpp passes it the same way).
import { main } from '../dist/src/cli/main.js';
main(process.argv).catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
