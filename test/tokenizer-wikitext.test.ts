// Encoding all of WikiText-2's test split (~300k tokens) with each real model's tokenizer.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Metadata, readGGUFHeader } from '../src/formats/gguf.js';
import { tokenizerFromGGUF } from '../src/tokenizer/index.js';
import { catalogModel, sharedPath } from './helpers.js';

// Timing is reported, not asserted: machines are shared and noisy (on an idle core each takes 0.3–1.5 s).

for (const name of ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m']) {
  test(`${name}: encodes all of wiki.test.raw and decodes it back`, (t) => {
    const text = readFileSync(sharedPath('eval', 'wikitext-2-raw', 'wiki.test.raw'), 'utf8');
    const h = readGGUFHeader(catalogModel(name));
    const t0 = performance.now();
    const tok = tokenizerFromGGUF(new Metadata(h.metadata, h.path));
    const t1 = performance.now();
    const ids = tok.encode(text, { addBos: false, parseSpecial: false });
    const t2 = performance.now();
    t.diagnostic(`${name}: build ${(t1 - t0).toFixed(0)} ms, encode ${(t2 - t1).toFixed(0)} ms, ${ids.length} tokens`);
    assert.ok(ids.length > 250_000 && ids.length < 400_000, `${ids.length} tokens`);
    assert.equal(tok.decode(ids), text);
  });
}
