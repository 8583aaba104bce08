#!/usr/bin/env python3
"""Write test/fixtures/reference-logits/<model>.json: an independent float64 reference of the
forward pass of the three real catalog models (SmolLM2-135M, Qwen2.5-Coder-0.5B, Gemma-3-270M).

The forward pass below is written from the published model definitions (Hugging Face
transformers' LlamaForCausalLM / Qwen2ForCausalLM / Gemma3ForCausalLM and llama.cpp's GGUF
conventions for how those are stored), not from ctxsparse's own code. Only the weights are
shared: they are read from the GGUF files and dequantized with the `gguf` Python package
(`gguf.GGUFReader`, `gguf.quants.dequantize`), then everything is computed in float64 over the
whole sequence at once (no KV cache, causal mask).

For each golden case in ../shared/golden/<model>/greedy.json (llama.cpp's greedy runs) the
script feeds prompt_ids + the first 8 greedy_ids (teacher forcing) and stores, for the last
prompt position and the 8 positions after it (9 positions, index j predicts greedy_ids[j]):
  * ref_top_ids / ref_top_logits: the 10 ids with the largest reference logits and their logits;
  * llamacpp_top_ids: llama.cpp's golden top-10 ids there, with ref_logits_of_llamacpp_top (our
    reference's logits of those ids) and llamacpp_top_logits (llama.cpp's own values, for info).
It also checks itself against llama.cpp: the reference's argmax must equal llama.cpp's greedy
token wherever llama.cpp's top-1 margin is clear (> MARGIN), and it prints the max |ref - llama.cpp|
over the golden top-10 logits (llama.cpp quantizes activations, so about +-1 is expected).

Usage: nice python3 scripts/make-reference-logits.py [model ...]
  (needs `pip install gguf numpy`; models in $CTXSPARSE_MODELS or ~/.cache/ctxsparse/models;
  set OPENBLAS_NUM_THREADS=1 / OMP_NUM_THREADS=1 to keep it on one core)
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np

import gguf
from gguf.quants import dequantize

SCRIPT_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / 'shared'
OUT_DIR = ROOT / 'test' / 'fixtures' / 'reference-logits'
MODELS_DIR = Path(os.environ.get('CTXSPARSE_MODELS', Path.home() / '.cache' / 'ctxsparse' / 'models'))
MODELS = ['smollm2-135m-instruct', 'qwen2.5-coder-0.5b-instruct', 'gemma-3-270m']
N_FORCED = 8  # golden greedy tokens fed after the prompt
TOPK = 10
MARGIN = 0.5  # llama.cpp top-1 margin above which our argmax must agree


# ----------------------------------------------------------------------------- GGUF access

class Weights:
    def __init__(self, path: Path):
        self.reader = gguf.GGUFReader(str(path))
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.arch = self.meta('general.architecture')

    def meta(self, key: str, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            if default is None:
                raise KeyError(key)
            return default
        return f.contents()

    def has(self, name: str) -> bool:
        return name in self.tensors

    def get(self, name: str) -> np.ndarray:
        """Dequantized values; matrices come out as (n_out, n_in), so y = W @ x.
        Kept in the float32 gguf returns (every dequantized value is exactly representable
        there) to halve the memory; all arithmetic on them is done in float64."""
        t = self.tensors[name]
        a = np.asarray(dequantize(t.data, t.tensor_type))
        assert a.dtype == np.float32, (name, a.dtype)
        return a

    def rows(self, name: str, ids: list[int]) -> np.ndarray:
        """Dequantize only the given rows of a matrix (embedding lookup)."""
        t = self.tensors[name]
        data = t.data  # (n_rows, bytes_per_row) for quantized types, (n_rows, n_cols) otherwise
        out = [np.asarray(dequantize(data[i:i + 1], t.tensor_type), dtype=np.float64).reshape(-1) for i in ids]
        return np.stack(out)


# ----------------------------------------------------------------------------- building blocks

def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * w over the last axis."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def rope(x: np.ndarray, base: float, style: str) -> np.ndarray:
    """x: (T, n_heads, head_dim); position of row t is t.
    'normal': rotate adjacent pairs (x[2i], x[2i+1]); 'neox': rotate (x[i], x[i + d/2]).
    Angle of pair i at position p: p * base^(-2i/d)."""
    T, _, d = x.shape
    half = d // 2
    inv_freq = base ** (-np.arange(half, dtype=np.float64) * 2.0 / d)
    ang = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, half)
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    out = np.empty_like(x)
    if style == 'normal':
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
    elif style == 'neox':
        a, b = x[..., :half], x[..., half:]
        out[..., :half] = a * cos - b * sin
        out[..., half:] = a * sin + b * cos
    else:
        raise ValueError(style)
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, window: int | None) -> np.ndarray:
    """q: (T, H, d), k/v: (T, Hkv, d). Causal; with a window, position p sees positions > p - window."""
    T, H, d = q.shape
    Hkv = k.shape[1]
    group = H // Hkv
    pos = np.arange(T)
    allowed = pos[None, :] <= pos[:, None]
    if window is not None:
        allowed &= pos[None, :] > pos[:, None] - window
    out = np.empty((T, H, v.shape[2]), dtype=np.float64)
    for h in range(H):
        kh, vh = k[:, h // group, :], v[:, h // group, :]
        s = (q[:, h, :] @ kh.T) * scale  # (T, T)
        s = np.where(allowed, s, -np.inf)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ vh
    return out.reshape(T, -1)


def linear(W: np.ndarray, x: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x: (T, n_in), W: (n_out, n_in) -> (T, n_out)."""
    y = x @ W.T.astype(np.float64)
    return y if b is None else y + b


# ----------------------------------------------------------------------------- models

class Model:
    def __init__(self, path: Path):
        self.w = Weights(path)
        arch = self.w.arch
        m = lambda k, d=None: self.w.meta(f'{arch}.{k}', d)  # noqa: E731
        self.arch = arch
        self.n_layer = int(m('block_count'))
        self.dim = int(m('embedding_length'))
        self.n_head = int(m('attention.head_count'))
        self.n_kv = int(m('attention.head_count_kv'))
        self.head_dim = int(m('attention.key_length', self.dim // self.n_head))
        self.eps = float(m('attention.layer_norm_rms_epsilon'))
        self.rope_base = float(m('rope.freq_base'))
        self.window = int(m('attention.sliding_window', 0)) or None
        if arch not in ('llama', 'qwen2', 'gemma3'):
            raise ValueError(f'unsupported architecture {arch}')
        # Layer weights, dequantized once.
        names = ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down',
                 'attn_q.bias', 'attn_k.bias', 'attn_v.bias', 'attn_q_norm', 'attn_k_norm',
                 'post_attention_norm', 'post_ffw_norm']
        self.layers = []
        for i in range(self.n_layer):
            L = {}
            for n in names:
                full = f'blk.{i}.{n}' if n.endswith('.bias') else f'blk.{i}.{n}.weight'
                if self.w.has(full):
                    L[n] = self.w.get(full)
            self.layers.append(L)
        self.output_norm = self.w.get('output_norm.weight')
        self.output_name = 'output.weight' if self.w.has('output.weight') else 'token_embd.weight'
        self._output = None

    def output(self) -> np.ndarray:
        if self._output is None:
            self._output = self.w.get(self.output_name)
        return self._output

    def layer_rope(self, i: int) -> tuple[float, int | None]:
        """RoPE base and attention window of layer i."""
        if self.arch == 'gemma3':
            if i % 6 < 5:  # sliding-window (local) layer
                return 10000.0, self.window
            return self.rope_base, None
        return self.rope_base, None

    def forward(self, ids: list[int], last: int) -> np.ndarray:
        """Logits (last, vocab) for the final `last` positions of the sequence `ids`."""
        T = len(ids)
        x = self.w.rows('token_embd.weight', ids)  # (T, dim)
        gemma = self.arch == 'gemma3'
        style = 'normal' if self.arch == 'llama' else 'neox'
        if gemma:
            x = x * np.sqrt(float(self.dim))
        H, Hkv, d = self.n_head, self.n_kv, self.head_dim
        for i, L in enumerate(self.layers):
            base, window = self.layer_rope(i)
            h = rms_norm(x, L['attn_norm'], self.eps)
            q = linear(L['attn_q'], h, L.get('attn_q.bias')).reshape(T, H, d)
            k = linear(L['attn_k'], h, L.get('attn_k.bias')).reshape(T, Hkv, d)
            v = linear(L['attn_v'], h, L.get('attn_v.bias')).reshape(T, Hkv, -1)
            if gemma:
                q = rms_norm(q, L['attn_q_norm'], self.eps)
                k = rms_norm(k, L['attn_k_norm'], self.eps)
            q = rope(q, base, style)
            k = rope(k, base, style)
            a = attention(q, k, v, 1.0 / np.sqrt(d), window)
            a = linear(L['attn_output'], a)
            if gemma:
                a = rms_norm(a, L['post_attention_norm'], self.eps)
            x = x + a
            h = rms_norm(x, L['ffn_norm'], self.eps)
            act = gelu_tanh if gemma else silu
            f = act(linear(L['ffn_gate'], h)) * linear(L['ffn_up'], h)
            f = linear(L['ffn_down'], f)
            if gemma:
                f = rms_norm(f, L['post_ffw_norm'], self.eps)
            x = x + f
        x = rms_norm(x[T - last:], self.output_norm, self.eps)
        W = self.output()
        chunk = 16384  # rows of the output matrix converted to float64 at a time
        return np.concatenate([x @ W[r:r + chunk].T.astype(np.float64) for r in range(0, W.shape[0], chunk)], axis=1)


# ----------------------------------------------------------------------------- fixtures

def top_k(v: np.ndarray, k: int) -> list[int]:
    idx = np.argpartition(-v, k)[:k]
    return [int(i) for i in idx[np.lexsort((idx, -v[idx]))]]


def run_model(name: str) -> dict:
    t0 = time.time()
    model = Model(MODELS_DIR / f'{name}.gguf')
    t_load = time.time() - t0
    golden = json.loads((SHARED / 'golden' / name / 'greedy.json').read_text())
    cases = []
    worst_llama = 0.0
    for ci, c in enumerate(golden['cases']):
        prompt, greedy = c['prompt_ids'], c['greedy_ids']
        ids = prompt + greedy[:N_FORCED]
        n_pos = N_FORCED + 1
        logits = model.forward(ids, n_pos)
        positions = []
        for j in range(n_pos):
            row = logits[j]
            ref_top = top_k(row, TOPK)
            g = c['top_logits'][j]
            ref_of_g = [float(row[i]) for i in g['ids']]
            diff = max(abs(a - b) for a, b in zip(ref_of_g, g['logits']))
            worst_llama = max(worst_llama, diff)
            margin = c['top1_margin'][j]
            if margin > MARGIN and ref_top[0] != greedy[j]:
                raise SystemExit(f'{name} case {ci} pos {j}: reference argmax {ref_top[0]} != llama.cpp greedy '
                                 f'{greedy[j]} although llama.cpp margin is {margin}')
            agree = ref_top[0] == greedy[j]
            print(f'  case {ci} pos {len(prompt) - 1 + j:3d}: ref argmax {ref_top[0]:6d} llama.cpp {greedy[j]:6d} '
                  f'{"==" if agree else "!="} (llama.cpp margin {margin:.3f}), max |ref - llama.cpp| top-10 {diff:.4f}')
            positions.append({
                'position': len(prompt) - 1 + j,
                'predicts': greedy[j] if j < len(greedy) else None,
                'ref_top_ids': ref_top,
                'ref_top_logits': [float(row[i]) for i in ref_top],
                'llamacpp_top_ids': g['ids'],
                'ref_logits_of_llamacpp_top': ref_of_g,
                'llamacpp_top_logits': g['logits'],
                'llamacpp_top1_margin': margin,
            })
        cases.append({'case': ci, 'kind': c.get('kind'), 'prompt_ids': prompt, 'forced_ids': greedy[:N_FORCED],
                      'positions': positions})
    print(f'{name}: load {t_load:.1f} s, total {time.time() - t0:.1f} s, '
          f'max |ref - llama.cpp| over golden top-10: {worst_llama:.4f}')
    return {
        'model': name,
        'architecture': model.arch,
        'generator': f'scripts/make-reference-logits.py v{SCRIPT_VERSION}',
        'date': datetime.date.today().isoformat(),
        'gguf_version': pkg_version('gguf'),
        'numpy_version': np.__version__,
        'precision': 'float64, full sequence, causal mask, no KV cache; weights dequantized by gguf.quants.dequantize',
        'golden': f'../shared/golden/{name}/greedy.json',
        'n_forced': N_FORCED,
        'note': 'positions[j] holds the logits after feeding prompt_ids + forced_ids[:j] (they predict greedy_ids[j])',
        'max_abs_diff_vs_llamacpp_top10': worst_llama,
        'cases': cases,
    }


def main() -> None:
    names = sys.argv[1:] or MODELS
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.time()
        data = run_model(name)
        out = OUT_DIR / f'{name}.json'
        out.write_text(json.dumps(data, indent=None, separators=(',', ':')) + '\n')
        print(f'wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes, {time.time() - t0:.1f} s)')


if __name__ == '__main__':
    main()
