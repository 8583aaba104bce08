#!/usr/bin/env python3
"""Reference logits of stories260K's F16 GGUF at the golden prompt, in float64 numpy.

The shared golden file holds fp32 logits; the F16 file's weights are rounded to half precision,
which alone moves some logits by more than 1e-2. This reference runs the same golden prompt through
the F16 weights (dequantized by the gguf package) with exact float64 math, so the engine's F16 path
can be checked tightly. Written from the Llama architecture (llama2.c run.c semantics), independent
of the engine's code.

Usage: python3 scripts/make-stories-reference.py  (needs `pip install gguf numpy`)
"""
import json, os
import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, '..', 'shared')
MODEL = os.path.join(SHARED, 'models', 'stories260K', 'gguf', 'stories260K-F16.gguf')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'stories260K-F16-logits.json')

r = gguf.GGUFReader(MODEL)
T = {t.name: t for t in r.tensors}
def W(n):
    t = T[n]
    return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
def field(k):
    f = r.fields[k]
    return f.parts[f.data[0]].tolist()[0]

dim = field('llama.embedding_length'); L = field('llama.block_count')
H = field('llama.attention.head_count'); KVH = field('llama.attention.head_count_kv')
eps = field('llama.attention.layer_norm_rms_epsilon'); hd = dim // H
golden = json.load(open(os.path.join(SHARED, 'golden', 'stories260K_golden.json')))
ids = golden['prompt_ids']; n = len(ids)

def rms(x, w): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
ang = np.arange(n)[:, None] * (10000.0 ** (-np.arange(0, hd, 2) / hd))[None, :]
cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
def rope(q):  # rotate adjacent pairs (2i, 2i+1)
    out = np.empty_like(q)
    out[..., 0::2] = q[..., 0::2] * cos - q[..., 1::2] * sin
    out[..., 1::2] = q[..., 0::2] * sin + q[..., 1::2] * cos
    return out

E = W('token_embd.weight')
x = E[ids]
for l in range(L):
    p = f'blk.{l}.'
    h = rms(x, W(p + 'attn_norm.weight'))
    q = rope((h @ W(p + 'attn_q.weight').T).reshape(n, H, hd))
    k = rope((h @ W(p + 'attn_k.weight').T).reshape(n, KVH, hd))
    v = (h @ W(p + 'attn_v.weight').T).reshape(n, KVH, hd)
    k = np.repeat(k, H // KVH, axis=1); v = np.repeat(v, H // KVH, axis=1)
    s = np.einsum('qhd,khd->hqk', q, k) / np.sqrt(hd) + np.triu(np.full((n, n), -np.inf), 1)[None]
    s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
    x = x + np.einsum('hqk,khd->qhd', s, v).reshape(n, dim) @ W(p + 'attn_output.weight').T
    h = rms(x, W(p + 'ffn_norm.weight'))
    g = h @ W(p + 'ffn_gate.weight').T
    x = x + (g / (1 + np.exp(-g)) * (h @ W(p + 'ffn_up.weight').T)) @ W(p + 'ffn_down.weight').T
out = W('output.weight') if 'output.weight' in T else E
logits = rms(x, W('output_norm.weight')) @ out.T
err = np.abs(logits - np.array(golden['logits_prompt'])).max(axis=1)
json.dump({'model': 'stories260K-F16.gguf', 'prompt_ids': ids, 'note': 'float64 numpy forward on the F16 weights (gguf dequantize)',
           'max_abs_diff_vs_fp32_golden': err.tolist(), 'logits': logits.round(7).tolist()}, open(OUT, 'w'))
print('wrote', OUT, 'max |F16 - fp32 golden| per position:', err)
