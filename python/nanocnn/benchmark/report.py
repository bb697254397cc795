"""Output of the benchmarks: terminal tables, JSON, markdown and a PNG plot of the ratios."""
from __future__ import annotations

import json
import os
from itertools import groupby


def _ms(seconds) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f}"


def _pct(fraction) -> str:
    return "" if fraction is None else f"{100 * fraction:.0f}%"


def _rate(value) -> str:
    return "" if value is None else f"{value:.1f}"


def peak_line(peak: dict) -> str:
    parts = []
    if peak.get("gflops"):
        parts.append(f"{peak['gflops']:.0f} GFLOP/s FP32")
    if peak.get("gbs"):
        parts.append(f"{peak['gbs']:.0f} GB/s")
    return f"peak ({peak['how']}): " + ", ".join(parts)


def noise_line(meta: dict) -> str:
    """A sentence on how noisy the run was, for the markdown files ("" before it is known)."""
    if "noisy_rows" not in meta:
        return ""
    load = meta.get("load_average_before")
    return (f"{meta['noisy_rows']} of {len(meta['rows'])} rows had an interquartile range over "
            f"25% of the median; load average before the run: "
            f"{'unknown' if load is None else f'{load:.2f}'}.")


def run_header(kind: str, meta: dict) -> str:
    m = meta["machine"]
    where = m.get("gpu") or f"{m['cpu']} ({m['cores']} cores)"
    threads = f", {meta['threads']} thread(s)" if meta.get("threads") else ""
    return (f"nanocnn {m['nanocnn']} vs PyTorch {m['torch']}: {kind} on {meta['device']} "
            f"[{where}]{threads}, commit {m['commit'] or 'unknown'}\n{peak_line(meta['peak'])}")


# ---- op benchmark -------------------------------------------------------------------------------

_OPS_COLUMNS = [("op", 30, "<"), ("dir", 8, "<"), ("nanocnn ms", 10, ">"), ("torch ms", 9, ">"),
                ("layout", 7, "<"), ("ratio", 6, ">"), ("nanocnn", 9, ">"), ("unit", 7, "<"),
                ("%peak", 6, ">"), ("torch %pk", 9, ">")]
_GPU_COLUMNS = [("tf32 ms", 9, ">"), ("ratio32", 7, ">")]


def _columns(gpu: bool):
    return _OPS_COLUMNS + (_GPU_COLUMNS if gpu else [])


def ops_table_header(gpu: bool) -> str:
    head = " ".join(f"{name:{align}{width}}" for name, width, align in _columns(gpu))
    return head + "\n" + "-" * len(head)


def ops_table_line(r: dict, gpu: bool) -> str:
    layout = {"nchw": "NCHW", "channels_last": "NHWC"}[r["torch_layout"]]
    cells = [r["name"], r["direction"], _ms(r["nanocnn_s"]), _ms(r["torch_s"]), layout,
             f"{r['ratio']:.2f}", _rate(r["nanocnn_rate"]), r["rate_unit"],
             _pct(r["nanocnn_peak_fraction"]), _pct(r["torch_peak_fraction"])]
    if gpu:
        cells += [_ms(r["torch_tf32_s"]),
                  "" if r["ratio_tf32"] is None else f"{r['ratio_tf32']:.2f}"]
    return " ".join(f"{str(c)[:w]:{a}{w}}" for c, (_, w, a) in zip(cells, _columns(gpu)))


def group_key(r: dict):
    return (r["suite"], r["batch"])


def ops_totals(rows: list) -> list:
    """Per network and batch: the sum of nanocnn's times and of PyTorch's (faster layout)."""
    totals = []
    for (suite, batch), group in groupby(rows, key=group_key):
        group = list(group)
        t_nc = sum(r["nanocnn_s"] for r in group)
        t_torch = sum(r["torch_s"] for r in group)
        totals.append({"suite": suite, "batch": batch, "rows": len(group), "nanocnn_s": t_nc,
                       "torch_s": t_torch, "ratio": t_torch / t_nc})
    return totals


def ops_total_line(total: dict) -> str:
    return (f"{'all ops of ' + total['suite'] + ' b' + str(total['batch']):<39} "
            f"{_ms(total['nanocnn_s']):>10} {_ms(total['torch_s']):>9} {'':7} "
            f"{total['ratio']:>6.2f}")


def ops_markdown(result: dict) -> str:
    gpu = result["device"] != "cpu"
    lines = [run_header("ops", result).replace("\n", "; ") + ".", "",
             "Ratio = PyTorch time (its faster layout: NCHW or channels-last, FP32) / nanocnn "
             "time; above 1 nanocnn is faster. Times are medians; %peak = achieved rate / the "
             "measured peak above (GFLOP/s for conv and dense, GB/s for the rest). "
             + noise_line(result), ""]
    head = ["op", "direction", "nanocnn ms", "PyTorch NCHW ms", "PyTorch channels-last ms",
            "ratio", "nanocnn rate", "nanocnn %peak", "PyTorch %peak"]
    if gpu:
        head += ["PyTorch TF32 ms", "ratio vs TF32"]
    totals = {(t["suite"], t["batch"]): t for t in result["totals"]}
    for key, group in groupby(result["rows"], key=group_key):
        lines += [f"### {key[0]}, batch {key[1]}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
        for r in group:
            cells = [r["name"], r["direction"], _ms(r["nanocnn_s"]), _ms(r["torch_nchw_s"]),
                     _ms(r["torch_channels_last_s"]), f"{r['ratio']:.2f}",
                     f"{r['nanocnn_rate']:.1f} {r['rate_unit']}", _pct(r["nanocnn_peak_fraction"]),
                     _pct(r["torch_peak_fraction"])]
            if gpu:
                cells += [_ms(r["torch_tf32_s"]),
                          "" if r["ratio_tf32"] is None else f"{r['ratio_tf32']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        t = totals[key]
        lines.append(f"| **all ops** | | **{_ms(t['nanocnn_s'])}** | **{_ms(t['torch_s'])}** "
                     f"(each row's faster layout) | | **{t['ratio']:.2f}** | | |"
                     + (" | |" if gpu else ""))
        lines.append("")
    for s in result.get("skipped", []):
        lines.append(f"- skipped {s['suite']} batch {s['batch']} {s['name']}: {s['reason']}")
    return "\n".join(lines).rstrip() + "\n"


def plot_ops(result: dict, path: str) -> bool:
    """A horizontal bar per row: the ratio on a log axis, 1 marked. False if matplotlib is
    missing (it is optional)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = result["rows"]
    labels = [f"{r['suite']} b{r['batch']} {r['name']} {r['direction']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.16 * len(rows)))
    colors = ["tab:green" if v >= 1 else "tab:red" for v in ratios]
    y = list(range(len(rows)))[::-1]
    # Bars grow from 1 (a tie) to the ratio: right for nanocnn faster, left for slower.
    ax.barh(y, [v - 1.0 for v in ratios], left=1.0, color=colors, height=0.75)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=6)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("PyTorch time / nanocnn time (log scale; > 1: nanocnn faster)")
    m = result["machine"]
    where = m.get("gpu") or m["cpu"]
    threads = f", {result['threads']} thread(s)" if result.get("threads") else ""
    ax.set_title(f"nanocnn {m['nanocnn']} vs PyTorch {m['torch']}, {where}{threads}",
                 fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---- end-to-end benchmark -----------------------------------------------------------------------

_TRAIN_COLUMNS = [("network", 13, "<"), ("batch", 5, ">"), ("thr", 4, ">"), ("what", 9, "<"),
                  ("nanocnn img/s", 13, ">"), ("torch img/s", 11, ">"), ("layout", 7, "<"),
                  ("ratio", 6, ">")]


def train_table_header() -> str:
    head = " ".join(f"{n:{a}{w}}" for n, w, a in _TRAIN_COLUMNS)
    return head + "\n" + "-" * len(head)


def train_table_line(r: dict) -> str:
    layout = {"nchw": "NCHW", "channels_last": "NHWC"}[r["torch_layout"]]
    cells = [r["network"], r["batch"], r["threads"] or "", r["what"],
             f"{r['nanocnn_images_per_s']:.1f}", f"{r['torch_images_per_s']:.1f}", layout,
             f"{r['ratio']:.2f}"]
    return " ".join(f"{str(c)[:w]:{a}{w}}" for c, (_, w, a) in zip(cells, _TRAIN_COLUMNS))


def train_markdown(result: dict) -> str:
    lines = [run_header("end-to-end training and inference", result).replace("\n", "; ") + ".",
             "", "One training step = forward, loss, backward, SGD update, from a numpy batch "
             "of channels-last images (the copy/transposition into each library is part of the "
             "step). Inference = forward with the final softmax/sigmoid. Images per second from "
             "the median step time; ratio = nanocnn images/s / PyTorch images/s (its faster "
             "layout), above 1 nanocnn is faster. " + noise_line(result), "",
             "| network | batch | threads | what | nanocnn ms | nanocnn img/s | PyTorch NCHW ms "
             "| PyTorch channels-last ms | PyTorch img/s | ratio |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['network']} | {r['batch']} | {r['threads'] or ''} | {r['what']} | "
                     f"{_ms(r['nanocnn_s'])} | {r['nanocnn_images_per_s']:.1f} | "
                     f"{_ms(r['torch_nchw_s'])} | {_ms(r['torch_channels_last_s'])} | "
                     f"{r['torch_images_per_s']:.1f} | {r['ratio']:.2f} |")
    for s in result.get("skipped", []):
        lines.append(f"- skipped {s['network']} batch {s['batch']}: {s['reason']}")
    return "\n".join(lines) + "\n"


# ---- files --------------------------------------------------------------------------------------


def write_text(path: str, text: str) -> None:
    """Writes atomically (nanocnn.saving.atomic_write), so a crash never leaves half a result
    file."""
    from ..saving import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, text.encode())


def write_json(path: str, data: dict) -> None:
    write_text(path, json.dumps(data, indent=1) + "\n")
