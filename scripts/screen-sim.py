#!/usr/bin/env python3
# Offline simulation of sparse-head screens (numpy) on the dumps of scripts/screen-sim-dump.mjs:
# the per-row screen (4-bit codes of W ⊘ c, one scale per row, c = colmax^0.75) against a two-stage
# screen rotated onto all D principal directions of the calibration states' h ⊙ c, whose first
# stage reads the top R directions' codes and whose second reads the rest for the 4-row groups of
# the rows the first stage keeps. Margin factors are calibrated on the calibration states (the
# largest error per unit of each margin's scale), rows are counted on WikiText-2 and HellaSwag
# context states at safety C: first-stage rows, groups read, final rows, per-row screen rows
# (median / p99 / mean), and whether the dense greedy token is always kept.
# With MODE `order` instead of the default `rotate`, the second screen is the engine's: W's columns
# reordered by the calibration states' energy (no rotation), its first stage the top R of them.
# Usage: python3 scripts/screen-sim.py DUMP_DIR R [C] [rotate|order]
import json
import sys
import numpy as np

d, R = sys.argv[1], int(sys.argv[2])
C = float(sys.argv[3]) if len(sys.argv) > 3 else 1.25
MODE = sys.argv[4] if len(sys.argv) > 4 else 'rotate'
D = json.load(open(f'{d}/meta.json'))['dim']
W = np.fromfile(f'{d}/W.f32', dtype=np.float32).reshape(-1, D)
cal = np.fromfile(f'{d}/cal.f32', dtype=np.float32).reshape(-1, D)
tests = {t: np.fromfile(f'{d}/{t}.f32', dtype=np.float32).reshape(-1, D)[:512 if t == 'wikitext' else None] for t in ('wikitext', 'hellaswag')}


def q4row(M):
    s = np.abs(M).max(axis=1, keepdims=True) / 7.0
    s[s == 0] = 1
    return (np.clip(np.round(M / s), -8, 7) * s).astype(np.float32)


def q8(a):
    s = np.abs(a).max(axis=1, keepdims=True) / 127.0
    s[s == 0] = 1
    return (np.round(a / s) * s).astype(np.float32)


c = np.abs(W).max(axis=0) ** 0.75
c[c == 0] = 1
Ws = W / c
A = (cal * c).astype(np.float64)
if MODE == 'rotate':
    _, U = np.linalg.eigh(A.T @ A)
    U = U[:, ::-1].astype(np.float32)
else:
    U = np.eye(D, dtype=np.float32)[:, np.argsort(-(A ** 2).sum(axis=0), kind='stable')]
Wr = Ws @ U
c2 = np.abs(Wr).max(axis=0) ** 0.75 if MODE == 'rotate' else np.ones(D, dtype=np.float32)
Wn = Wr / c2
Wq = q4row(Wn)
rerr = np.linalg.norm(Wq - Wn, axis=1)
dres = np.linalg.norm(Wq[:, R:], axis=1)
Wo = q4row(Ws)
rold = np.linalg.norm(Wo - Ws, axis=1)


def parts(H):
    a = q8(((H * c) @ U) * c2)
    ao = q8(H * c)
    return dict(z=H @ W.T, s1=a[:, :R] @ Wq[:, :R].T, s=a @ Wq.T, na=np.linalg.norm(a, axis=1),
                nres=np.linalg.norm(a[:, R:], axis=1), so=ao @ Wo.T, nao=np.linalg.norm(ao, axis=1))


k1 = k2 = ko = 0.0
for i in range(0, len(cal), 128):
    p = parts(cal[i:i + 128])
    k1 = max(k1, float((np.abs(p['s1'] - p['z']) / (rerr[None] * p['na'][:, None] + dres[None] * p['nres'][:, None])).max()))
    k2 = max(k2, float((np.abs(p['s'] - p['z']) / (rerr[None] * p['na'][:, None])).max()))
    ko = max(ko, float((np.abs(p['so'] - p['z']) / (rold[None] * p['nao'][:, None])).max()))
print(f'{d}: {MODE}, D {D}, R {R}, calibration states {len(cal)}, k1 {k1:.3f} k2 {k2:.3f} per-row k {ko:.3f}, safety {C}')


def stats(x):
    return f'{np.median(x):.0f} / {np.percentile(x, 99):.0f} / {np.mean(x):.0f}'


for name, H in tests.items():
    first, groups, final, old, ok, oko = [], [], [], [], 0, 0
    for i in range(0, len(H), 128):
        p = parts(H[i:i + 128])
        z, n = p['z'], len(p['z'])
        ar = np.arange(n)
        m = z[ar, p['s1'].argmax(axis=1)]
        C1 = p['s1'] + C * k1 * (rerr[None] * p['na'][:, None] + dres[None] * p['nres'][:, None]) >= m[:, None]
        m2 = np.maximum(m, z[ar, np.where(C1, p['s'], -np.inf).argmax(axis=1)])
        C2 = C1 & (p['s'] + C * k2 * rerr[None] * p['na'][:, None] >= m2[:, None])
        first += list(C1.sum(axis=1))
        final += list(C2.sum(axis=1))
        groups += [len(np.unique(np.nonzero(C1[t])[0] // 4)) for t in range(n)]
        ok += int((np.where(C2, z, -np.inf).argmax(axis=1) == z.argmax(axis=1)).sum())
        mo = z[ar, p['so'].argmax(axis=1)]
        Co = p['so'] + C * ko * rold[None] * p['nao'][:, None] >= mo[:, None]
        old += list(Co.sum(axis=1))
        oko += int((np.where(Co, z, -np.inf).argmax(axis=1) == z.argmax(axis=1)).sum())
    print(f'  {name:9s} {len(H)} states: first stage rows {stats(first)}; groups read {stats(groups)}; final rows {stats(final)}; '
          f'greedy kept {ok}/{len(H)} | per-row screen rows {stats(old)}, kept {oko}/{len(H)}')
