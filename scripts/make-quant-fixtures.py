#!/usr/bin/env python3
"""Write the dequantization fixtures in test/fixtures/quant/.

For every ggml type ctxsparse supports this writes, per case, the raw block bytes
(`<id>.bin`) and the values the independent reference -- the `gguf` Python package's
`gguf.quants.dequantize` -- produces for them, as little-endian float32 (`<id>.f32`).
`manifest.json` lists the cases and where each one came from:

  * real tensors: a row (or the first blocks of a row) of a tensor in one of the local
    models, with the tensor name, row, first block and absolute file offset;
  * synthetic blocks, for types no local model uses (Q5_1, Q2_K, Q3_K, Q5_K, BF16) and
    as an extra edge-case sweep for every type: random bytes with the f16 scales forced
    to finite values, or real f32 weights run through gguf's own quantizer where it has
    one (Q5_1, BF16).

It also writes f32 -> f16 / bf16 conversion fixtures (numpy's float16 cast and gguf's
BF16 quantizer, both round-to-nearest-even) for testing f32ToF16 / f32ToBF16.

Usage: python3 scripts/make-quant-fixtures.py   (needs `pip install gguf numpy`)
Deterministic: the same models and package versions give the same bytes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "quant"
MODELS = Path(os.environ.get("CTXSPARSE_MODELS", Path.home() / ".cache" / "ctxsparse" / "models"))
SHARED = ROOT.parent / "shared"

rng = np.random.default_rng(20240611)
cases: list[dict] = []
_readers: dict[str, gguf.GGUFReader] = {}


def model_path(ref: str) -> Path:
    kind, name = ref.split(":", 1)
    if kind == "catalog":
        return MODELS / f"{name}.gguf"
    if kind == "shared":
        return SHARED / name
    raise ValueError(ref)


def reader(ref: str) -> gguf.GGUFReader:
    if ref not in _readers:
        _readers[ref] = gguf.GGUFReader(str(model_path(ref)), "r")
    return _readers[ref]


def reference(raw: np.ndarray, qtype: T) -> np.ndarray:
    """gguf's dequantization of raw block bytes, as a flat float32 array."""
    out = gguf.quants.dequantize(np.ascontiguousarray(raw, dtype=np.uint8), qtype)
    out = np.asarray(out, dtype=np.float32).reshape(-1)
    return out


def add_case(case_id: str, qtype: T, raw: np.ndarray, source: dict) -> None:
    bs, bb = GGML_QUANT_SIZES[qtype]
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    assert raw.size % bb == 0, (case_id, raw.size, bb)
    n = raw.size // bb * bs
    expected = reference(raw, qtype)
    assert expected.size == n, (case_id, expected.size, n)
    (OUT / f"{case_id}.bin").write_bytes(raw.tobytes())
    (OUT / f"{case_id}.f32").write_bytes(expected.astype("<f4").tobytes())
    cases.append({"id": case_id, "type": qtype.name, "n": n, "bytes": f"{case_id}.bin",
                  "expected": f"{case_id}.f32", "source": source})


def add_real(qtype: T, ref: str, tensor: str, row: int, max_blocks: int | None = None, first_block: int = 0) -> None:
    r = reader(ref)
    t = next(t for t in r.tensors if t.name == tensor)
    assert t.tensor_type == qtype, (tensor, t.tensor_type, qtype)
    dims = [int(d) for d in t.shape]  # ggml order: dims[0] is the row length
    n_rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
    assert 0 <= row < n_rows, (tensor, row, n_rows)
    bs, bb = GGML_QUANT_SIZES[qtype]
    blocks_per_row = dims[0] // bs
    n_blocks = blocks_per_row - first_block if max_blocks is None else min(max_blocks, blocks_per_row - first_block)
    start = int(t.data_offset) + row * blocks_per_row * bb + first_block * bb
    raw = np.array(r.data[start:start + n_blocks * bb], dtype=np.uint8)
    safe = tensor.replace(".", "_")
    model_short = ref.split(":", 1)[1].split("/")[-1].replace(".gguf", "")
    case_id = f"{qtype.name}-{model_short}-{safe}-r{row}"
    if first_block:
        case_id += f"-b{first_block}"
    add_case(case_id, qtype, raw, {
        "kind": "tensor", "model": ref, "tensor": tensor, "dims": dims, "row": row,
        "firstBlock": first_block, "nBlocks": n_blocks, "fileOffset": start,
    })


def f16_bytes(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).astype(np.float16).view(np.uint8)


def sane_scales(count: int, lo: float = 1e-4, hi: float = 0.25, signed: bool = True) -> np.ndarray:
    mag = np.exp(rng.uniform(np.log(lo), np.log(hi), size=count))
    if signed:
        mag *= rng.choice([-1.0, 1.0], size=count)
    return mag.astype(np.float32)


# byte offsets of the f16 scale fields in each block type: (offset of d, offset of dmin/m or None)
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}


def add_random_blocks(qtype: T, n_blocks: int) -> None:
    """Random bytes with every f16 scale set to a finite value; the last blocks pin edge
    scales (zero, subnormal, negative, the largest f16)."""
    bs, bb = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, bb), dtype=np.uint8)
    fields = SCALE_FIELDS[qtype]
    for off in fields:
        raw[:, off:off + 2] = f16_bytes(sane_scales(n_blocks)).reshape(n_blocks, 2)
    edge = [0.0, 2.0 ** -24 * 37, -3.5e-5, 65504.0, -1.0]
    for i, v in enumerate(edge[:max(0, n_blocks - 2)]):
        b = n_blocks - 1 - i
        raw[b, fields[0]:fields[0] + 2] = f16_bytes([v])
    add_case(f"{qtype.name}-random", qtype, raw, {
        "kind": "synthetic", "method": f"{n_blocks} blocks of random bytes (numpy default_rng), f16 scales at byte offsets "
        f"{fields} set to random finite values; last blocks use d in {edge[:max(0, n_blocks - 2)]}",
    })


def add_quantized_from_f32(qtype: T, ref: str, tensor: str, rows: range) -> None:
    """Real f32 weights run through gguf's own quantizer for qtype, then its dequantizer."""
    r = reader(ref)
    t = next(t for t in r.tensors if t.name == tensor)
    assert t.tensor_type == T.F32
    dims = [int(d) for d in t.shape]
    vals = np.array(t.data, dtype=np.float32).reshape(-1, dims[0])[rows.start:rows.stop].reshape(-1)
    q = gguf.quants.quantize(vals, qtype)
    raw = np.asarray(q).view(np.uint8).reshape(-1)
    add_case(f"{qtype.name}-quantized-{tensor.replace('.', '_')}", qtype, raw, {
        "kind": "quantized", "method": f"gguf.quants.quantize(..., {qtype.name}) of f32 weights",
        "model": ref, "tensor": tensor, "dims": dims, "rows": [rows.start, rows.stop],
    })


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    smol = "catalog:smollm2-135m-instruct"
    qwen = "catalog:qwen2.5-coder-0.5b-instruct"
    gemma = "catalog:gemma-3-270m"
    st_f32 = "shared:models/stories260K/gguf/stories260K-F32.gguf"
    st_f16 = "shared:models/stories260K/gguf/stories260K-F16.gguf"
    st_q4 = "shared:models/stories260K/gguf/stories260K-Q4_0.gguf"
    st_q8 = "shared:models/stories260K/gguf/stories260K-Q8_0.gguf"

    # ---- real tensors
    add_real(T.F32, qwen, "blk.0.attn_norm.weight", 0)
    add_real(T.F32, st_f32, "token_embd.weight", 7)
    add_real(T.F32, st_f32, "blk.2.ffn_down.weight", 40)
    add_real(T.F16, st_f16, "token_embd.weight", 5)
    add_real(T.F16, st_f16, "token_embd.weight", 400)
    add_real(T.F16, st_q4, "blk.0.ffn_down.weight", 3)
    add_real(T.Q4_0, st_q4, "token_embd.weight", 1)
    add_real(T.Q4_0, st_q4, "token_embd.weight", 511)
    add_real(T.Q4_0, st_q4, "blk.0.attn_output.weight", 10)
    add_real(T.Q8_0, st_q8, "token_embd.weight", 2)
    add_real(T.Q8_0, qwen, "blk.0.attn_v.weight", 17)
    add_real(T.Q8_0, gemma, "blk.0.attn_v.weight", 100)
    add_real(T.Q8_0, smol, "token_embd.weight", 1234)
    add_real(T.Q4_1, smol, "blk.0.ffn_gate.weight", 0)
    add_real(T.Q4_1, smol, "blk.0.ffn_gate.weight", 1535)
    add_real(T.Q4_1, smol, "blk.3.ffn_down.weight", 100)
    add_real(T.Q5_0, qwen, "blk.0.ffn_gate.weight", 0)
    add_real(T.Q5_0, qwen, "blk.0.ffn_gate.weight", 4863)
    add_real(T.Q5_0, qwen, "token_embd.weight", 9707)
    add_real(T.Q5_0, gemma, "blk.0.attn_q.weight", 5)
    add_real(T.Q4_K, qwen, "blk.11.ffn_down.weight", 0)
    add_real(T.Q4_K, qwen, "blk.11.ffn_down.weight", 895)
    add_real(T.Q4_K, gemma, "blk.0.attn_output.weight", 7)
    add_real(T.Q6_K, qwen, "blk.0.ffn_down.weight", 1)
    add_real(T.Q6_K, qwen, "blk.0.ffn_down.weight", 500)
    add_real(T.Q6_K, gemma, "blk.0.ffn_down.weight", 639)

    # ---- gguf's own quantizer on real f32 weights (types with no local tensor)
    add_quantized_from_f32(T.Q5_1, st_f32, "blk.0.ffn_gate.weight", range(0, 16))
    add_quantized_from_f32(T.BF16, st_f32, "token_embd.weight", range(0, 8))

    # ---- random blocks for every block-quantized type
    for qt in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        add_random_blocks(qt, 16)
    for qt in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        add_random_blocks(qt, 12)

    # ---- float types: every special class plus random bit patterns
    specials16 = [0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0200, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0xfbff,
                  0x7c00, 0xfc00, 0x7e00, 0xfe00, 0x7c01, 0x7d55, 0x3555, 0x0155]
    f16_bits = np.concatenate([np.array(specials16, dtype=np.uint16),
                               rng.integers(0, 65536, size=493, dtype=np.uint16)])
    add_case("F16-bitpatterns", T.F16, f16_bits.view(np.uint8), {
        "kind": "synthetic", "method": "f16 specials (zeros, subnormals, max, inf, quiet/signalling NaN) then random u16"})
    specials_bf = [0x0000, 0x8000, 0x0001, 0x807f, 0x0080, 0x3f80, 0xbf80, 0x7f7f, 0xff7f, 0x7f80, 0xff80,
                   0x7fc0, 0xffc0, 0x7f81, 0x7fff]
    bf_bits = np.concatenate([np.array(specials_bf, dtype=np.uint16),
                              rng.integers(0, 65536, size=497, dtype=np.uint16)])
    add_case("BF16-bitpatterns", T.BF16, bf_bits.view(np.uint8), {
        "kind": "synthetic", "method": "bf16 specials (zeros, subnormals, max, inf, NaN) then random u16"})
    specials32 = np.array([0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x7f7fffff, 0x7f800000, 0xff800000,
                           0x7fc00000, 0x7fc12345], dtype=np.uint32)
    f32_bits = np.concatenate([specials32, rng.integers(0, 2 ** 32, size=247, dtype=np.uint32)])
    add_case("F32-bitpatterns", T.F32, f32_bits.view(np.uint8), {
        "kind": "synthetic", "method": "f32 specials then random u32 (bit-exact copy expected)"})

    # ---- f32 -> f16 / bf16 conversion fixtures
    conv_src = np.concatenate([
        # every f16 value, exactly
        np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32),
        # midpoints between neighbouring f16 values (ties: round to even), and just either side
        *(lambda lo, hi: [
            ((lo.astype(np.float64) + hi) / 2).astype(np.float32),
            np.nextafter(((lo.astype(np.float64) + hi) / 2).astype(np.float32), np.float32(np.inf)),
            np.nextafter(((lo.astype(np.float64) + hi) / 2).astype(np.float32), np.float32(-np.inf)),
        ])(np.arange(0, 0x7bff, dtype=np.uint16).view(np.float16).astype(np.float32)[::7],
           np.arange(1, 0x7c00, dtype=np.uint16).view(np.float16).astype(np.float32)[::7]),
        np.array([65519.99, 65520.0, 65536.0, 1e6, 1e-8, 2.0 ** -25, np.nextafter(np.float32(2.0 ** -25), np.float32(1)),
                  2.0 ** -26, 1e-45, -1e-45, 3.4e38, -3.4e38], dtype=np.float32),
        rng.standard_normal(4000).astype(np.float32) * np.float32(3.0),
        np.exp(rng.uniform(-40, 15, size=4000)).astype(np.float32) * rng.choice([-1, 1], size=4000).astype(np.float32),
        rng.integers(0, 2 ** 32, size=2000, dtype=np.uint32).view(np.float32),
    ]).astype(np.float32)
    with np.errstate(over="ignore"):
        to16 = conv_src.astype(np.float16).view(np.uint16)
    (OUT / "conv-f32.f32").write_bytes(conv_src.astype("<f4").tobytes())
    (OUT / "conv-f16.u16").write_bytes(to16.astype("<u2").tobytes())
    to_bf = np.asarray(gguf.quants.quantize(conv_src, T.BF16)).view(np.uint16)
    (OUT / "conv-bf16.u16").write_bytes(to_bf.astype("<u2").tobytes())

    manifest = {
        "generator": "scripts/make-quant-fixtures.py",
        "reference": f"gguf {getattr(gguf, '__version__', None) or _pkg_version('gguf')} (gguf.quants.dequantize), numpy {np.__version__}",
        "cases": cases,
        "conversions": {
            "n": int(conv_src.size),
            "f32": "conv-f32.f32",
            "f16": {"file": "conv-f16.u16", "method": "numpy float32 -> float16 cast (round to nearest even)"},
            "bf16": {"file": "conv-bf16.u16", "method": "gguf.quants.quantize(..., BF16) (round to nearest even, NaN forced quiet)"},
        },
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(cases)} cases, {total} bytes to {OUT.relative_to(ROOT)}")


def _pkg_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # pragma: no cover
        return "unknown"


if __name__ == "__main__":
    main()
