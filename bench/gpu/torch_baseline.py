#!/usr/bin/env python3
"""The peer baseline for `moeyard bench --backend cuda`: Megatron's unfused MoE all-to-all path
(MoEAlltoAllTokenDispatcher) written with PyTorch ops, R virtual ranks on one GPU.

Dispatch, per source rank: permute (index_select of each selection's token row, expert-major, so
rank-major), the all-to-all-v as one copy per (source, destination) block into the destination's
receive buffer (rotated order r+1, r+2, ..., like moeyard's), then sort_chunks_by_idxs on each
destination ([source][local expert] blocks -> [local expert][source], torch.split + torch.cat).
Combine, the reverse: sort chunks back, copies home, unpermute (weights applied in fp32, index_add
into the token's row, cast to bf16), as Megatron's unpermute does.

Timed with CUDA events around all R ranks' work (median of --iters after --warmup), the data phase
only: the routing metadata (sort order, counts to the host) is computed once outside, as
moeyard's device time excludes its layout and count read. Bytes are counted as moeyard counts
them: DeepEP's bytes received per rank (token-rank pairs x row bytes), averaged over ranks; the
roofline is one device-to-device copy of all ranks' bytes, in the same per-rank units.

Not bit-comparable with moeyard (its combine rounds each rank's partial; index_add's order is not
fixed); a functional check (identity experts: combine(dispatch(x)) ~= x) runs once before timing.

Same inputs as moeyard: `--routing FILE.npy` reads the routing `moeyard bench --routing-out FILE.npy`
wrote ([ranks, tokens, topk] expert ids, -1 = none; ranks, tokens and top-k then come from the
file), so both run the very same topk_idx. Without it, routing is drawn here (distinct uniform
experts, the same distribution as the bench's default, not the same draw).

Usage: python3 torch_baseline.py [--tokens 4096 --hidden 7168 --topk 8 --experts 256 --ranks 8]
       [--routing FILE.npy] [--json FILE] (default $OUT/torch-baseline.json when OUT is set)
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=4096, help="tokens per rank")
    ap.add_argument("--hidden", type=int, default=7168)
    ap.add_argument("--topk", type=int, default=8)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (a functional dry run)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--routing", default=None, help="[ranks, tokens, topk] .npy from moeyard bench --routing-out")
    a = ap.parse_args()
    routing = None
    if a.routing:
        import numpy as np

        routing = np.load(a.routing)
        if routing.ndim != 3:
            print("torch_baseline: %s: want [ranks, tokens, topk], got shape %s" % (a.routing, routing.shape), file=sys.stderr)
            return 2
        a.ranks, a.tokens, a.topk = (int(v) for v in routing.shape)
        if routing.max(initial=-1) >= a.experts:
            print("torch_baseline: %s holds expert %d, --experts is %d" % (a.routing, routing.max(), a.experts), file=sys.stderr)
            return 2
    json_path = a.json or (os.path.join(os.environ["OUT"], "torch-baseline.json") if os.environ.get("OUT") else None)

    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        print("torch_baseline: CUDA is not available to torch", file=sys.stderr)
        return 3
    if a.experts % a.ranks:
        print("torch_baseline: --experts must be divisible by --ranks", file=sys.stderr)
        return 2
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    R, T, H, K, E = a.ranks, a.tokens, a.hidden, a.topk, a.experts
    S = E // R
    bf16 = torch.bfloat16
    g = torch.Generator(device=dev)
    g.manual_seed(a.seed)

    # ---- inputs: random rows (never zeros), distinct uniform experts, normalised positive weights
    xs, idxs, ws = [], [], []
    for r in range(R):
        xs.append(torch.empty(T, H, device=dev, dtype=bf16).uniform_(-2, 2, generator=g))
        if routing is not None:
            idxs.append(torch.from_numpy(routing[r].astype("int64")).to(dev))
        else:
            idxs.append(torch.rand(T, E, device=dev, generator=g).topk(K, dim=1).indices)
        w = torch.rand(T, K, device=dev, generator=g) * 0.95 + 0.05
        ws.append(w / w.sum(dim=1, keepdim=True))

    # ---- routing metadata, once (Megatron computes it before the all-to-all, with a host sync)
    tok_of, perm_w, counts, sels = [], [], [], []
    for r in range(R):
        flat = idxs[r].reshape(-1)
        valid = torch.nonzero(flat >= 0).squeeze(1)  # -1 = routed nowhere: no row
        ids = flat[valid]
        order = valid[torch.argsort(ids, stable=True)]  # expert-major, token order inside an expert
        tok_of.append(order // K)
        perm_w.append(ws[r].reshape(-1)[order].contiguous())
        counts.append(torch.bincount(ids, minlength=E).cpu().tolist())  # [E], expert e on rank e // S
        sels.append(int(ids.numel()))
    # send offsets: rank r's permuted rows for destination d start at send_off[r][d]
    send_off = [[sum(counts[r][: d * S]) for d in range(R + 1)] for r in range(R)]
    # receive layout on d: blocks [source r][local expert s], sizes counts[r][d*S + s]
    blk = [[counts[r][d * S + s] for r in range(R) for s in range(S)] for d in range(R)]
    recv_rows = [sum(b) for b in blk]
    recv_off = [[sum(blk[d][: r * S]) for r in range(R + 1)] for d in range(R)]
    # sort_chunks_by_idxs: chunk index of (r, s) is r*S + s; expert-major order is s-major
    to_expert_major = [r * S + s for s in range(S) for r in range(R)]
    blk_em = [[blk[d][i] for i in to_expert_major] for d in range(R)]
    to_source_major = [s * R + r for r in range(R) for s in range(S)]

    # ---- bytes (DeepEP's bytes received per rank: token-rank pairs x row bytes)
    pairs = [0] * R
    for r in range(R):
        dst = idxs[r] // S
        for d in range(R):
            pairs[d] += int((dst == d).any(dim=1).sum())
    row_bytes = H * 2
    db = sum(pairs) / R * row_bytes
    cb = db

    # ---- buffers, allocated once (the reuse path)
    perm = [torch.empty(sels[r], H, device=dev, dtype=bf16) for r in range(R)]
    recv = [torch.empty(recv_rows[d], H, device=dev, dtype=bf16) for d in range(R)]
    back = [torch.empty(sels[r], H, device=dev, dtype=bf16) for r in range(R)]
    state = {}

    def dispatch():
        for r in range(R):
            torch.index_select(xs[r], 0, tok_of[r], out=perm[r])
        for r in range(R):
            for i in range(1, R + 1):
                d = (r + i) % R
                n = send_off[r][d + 1] - send_off[r][d]
                if n:
                    recv[d][recv_off[d][r]: recv_off[d][r] + n].copy_(perm[r][send_off[r][d]: send_off[r][d] + n])
        out = []
        for d in range(R):
            chunks = torch.split(recv[d], blk[d])
            out.append(torch.cat([chunks[i] for i in to_expert_major]))
        state["expert_major"] = out
        return out

    def combine(y):
        for d in range(R):
            chunks = torch.split(y[d], blk_em[d])
            src_major = torch.cat([chunks[i] for i in to_source_major])
            for i in range(1, R + 1):
                r = (d + i) % R
                n = send_off[r][d + 1] - send_off[r][d]
                if n:
                    back[r][send_off[r][d]: send_off[r][d] + n].copy_(src_major[recv_off[d][r]: recv_off[d][r] + n])
        outs = []
        for r in range(R):
            acc = torch.zeros(T, H, device=dev, dtype=torch.float32)
            acc.index_add_(0, tok_of[r], back[r].float() * perm_w[r].unsqueeze(1))
            outs.append(acc.to(bf16))
        return outs

    # ---- functional check, once: identity experts, weights sum to 1 -> combine(dispatch(x)) ~= x
    y = [t.clone() for t in dispatch()]
    outs = combine(y)
    # a token's expected output is x times the sum of its routed weights (1 unless it has -1 entries)
    kept = [(ws[r] * (idxs[r] >= 0)).sum(dim=1, keepdim=True) for r in range(R)]
    worst = max(float(((o.float() - x.float() * k).abs() / (x.float().abs() * k + 1e-2)).max())
                for o, x, k in zip(outs, xs, kept))
    # and the expert-major layout itself on rank 0: slot s holds the tokens choosing it, by source rank, token
    d = 0
    want = []
    for s in range(S):
        for r in range(R):
            tok = (idxs[r] == d * S + s).any(dim=1).nonzero().flatten()
            want.append(xs[r].index_select(0, tok))
    layout_ok = bool(torch.equal(torch.cat(want), y[0]))
    ok = layout_ok and worst < 0.05
    check = "layout of rank 0 %s; combine(dispatch(x)) vs x: max rel err %.3g" % (
        "exact" if layout_ok else "WRONG", worst)
    print("torch_baseline: check: " + check, file=sys.stderr)

    def timed(fn):
        ms = []
        for i in range(a.warmup + a.iters):
            if cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                s.record()
                fn()
                e.record()
                e.synchronize()
                t = s.elapsed_time(e)
            else:
                t0 = time.perf_counter()
                fn()
                t = (time.perf_counter() - t0) * 1e3
            if i >= a.warmup:
                ms.append(t)
        return statistics.median(ms)

    d_ms = timed(dispatch)
    c_ms = timed(lambda: combine(y))
    nbytes = int(db * R)
    src = torch.ones(max(1, nbytes), device=dev, dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy_ms = timed(lambda: dst.copy_(src))
    del src, dst

    def fig(ms, b):
        return {"median_us": ms * 1e3, "gbps": b / (ms * 1e6)}

    res = {
        "config": {
            "impl": "torch, Megatron unfused (permute -> per-rank copies -> sort chunks; reverse + unpermute)",
            "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "torch": torch.__version__,
            "ranks": R, "tokens": T, "hidden": H, "experts": E, "topk": K, "dtype": "bf16",
            "iters": a.iters, "warmup": a.warmup, "seed": a.seed,
            "routing": a.routing or "drawn here (uniform, distinct experts)",
            "dispatch_bytes_per_rank": db, "combine_bytes_per_rank": cb,
        },
        "dispatch": fig(d_ms, db),
        "combine": fig(c_ms, cb),
        "copy_us": copy_ms * 1e3,
        "copy_gbps": db / (copy_ms * 1e6),
        "check": check,
        "verified": ok,
    }
    text = json.dumps(res, indent=2)
    print(text)
    if json_path:
        tmp = json_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, json_path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
