"""BENCHMARKS.md's results format for the PyTorch tools (quant_probe.py, bench_*.py): the
header bench/results_file.ts writes (device, adapter, commit, date, command, driver), rows with
the standard fields, and the `.md` table beside the `.json`, in the Python standard library
only. These runs use no Deno, so their header has no `deno` field (rather than a null one).

    python3 tools/torch/results_format.py   # self-test
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def git_commit():
    """WEBDIT_COMMIT, else `git rev-parse --short HEAD`, else "unknown" (as results_file.ts:
    the GPU machine's copy of .git can be stale)."""
    env = os.environ.get("WEBDIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=HERE)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def is_host_cpu(device):
    """Whether `device` is the host CPU ("host CPU (<model>)", results_file.ts isHostCpu)."""
    return re.match(r"host CPU\b", device) is not None


def gpu_driver(device):
    """None on the host CPU (its run used no GPU, whatever the machine has), else
    WEBDIT_GPU_DRIVER, else on an NVIDIA device "NVIDIA <version>" from nvidia-smi (as
    bench/gpu_all.sh writes it), else None."""
    if is_host_cpu(device):
        return None
    env = os.environ.get("WEBDIT_GPU_DRIVER")
    if env:
        return env
    if "nvidia" not in device.lower() or not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    v = out.stdout.strip().split("\n")[0].strip() if out.returncode == 0 else ""
    return f"NVIDIA {v}" if v else None


def host_cpu():
    """The host CPU as a results device: "host CPU (<model name>)" (bench/results/host/)."""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
    except OSError:
        m = None
    return f"host CPU ({m.group(1).strip()})" if m else "host CPU"


def device_slug(name):
    """The results folder of a CUDA device name: nvidia-h200 and the like (as bench/harness.ts)."""
    m = re.search(r"(H100|H200|A100|L40S|B200)", name, re.I)
    return f"nvidia-{m.group(1).lower()}" if m else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def results_header(device, adapter, command, commit=None, date=None):
    """The header of a results file: device, adapter, commit, date (UTC, or WEBDIT_BENCH_DATE),
    command, and the driver where known."""
    driver = gpu_driver(device)
    head = {"device": device, "adapter": adapter, "commit": commit or git_commit(),
            "date": date or os.environ.get("WEBDIT_BENCH_DATE") or time.strftime("%Y-%m-%d", time.gmtime()),
            "command": command}
    if driver:
        head["driver"] = driver
    return head


def figure_row(name, value, unit, note=None):
    """A row of a figure that is not a time (dB, a share): no timing, as results_file.ts figureRow."""
    row = {"name": name, "value": value, "unit": unit, "median_ms": 0, "min_ms": 0}
    if note:
        row["note"] = note
    return row


def peer_arg_parser(iters=10, warmup=3):
    """The PyTorch peers' shared options: --commit (required), --out-dir, --iters, --warmup."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", required=True)
    ap.add_argument("--out-dir", default="bench/results")
    ap.add_argument("--iters", type=int, default=iters)
    ap.add_argument("--warmup", type=int, default=warmup)
    return ap


def timing_row(name, ms, note):
    """A row of CUDA-event times `ms`: the median is the value, the minimum beside it."""
    med = round(statistics.median(ms), 3)
    return {"name": name, "value": med, "unit": "ms", "median_ms": med, "min_ms": round(min(ms), 3), "note": note}


def write_torch_results(out_dir, what, device, command, commit, rows, extra, date=None):
    """Writes a PyTorch run's `<out_dir>/<device slug>/<date>_<what>.json` (+ .md): the header
    (adapter "pytorch-cuda"), `rows`, and `extra` (torch, cuda, notes…), the .md text being the
    notes and the versions. Returns the document and the path without extension."""
    doc = {**results_header(device, "pytorch-cuda", command, commit=commit, date=date), "results": rows,
           "extra": extra}
    folder = os.path.join(out_dir, device_slug(device))
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, f"{doc['date']}_{what}")
    write_results(base + ".json", doc, f"{extra['notes']}\n\ntorch {extra['torch']}, CUDA {extra['cuda']}.")
    return doc, base


def fmt(v):
    """A value for a table: 3 significant digits (results_file.ts fmt)."""
    if v is None:
        return ""
    if not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        return str(v)
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def results_markdown(doc, text=""):
    """The `.md` table of a results file (results_file.ts resultsMarkdown), `text` after it."""
    lines = [f"# {doc['date']} — {doc['device']}", "",
             f"adapter: {doc['adapter']}" + (f" · driver {doc['driver']}" if doc.get("driver") else "")
             + f" · commit {doc['commit']}", "",
             f"command: `{doc['command']}`", "",
             "| name | value | unit | median ms | min ms | note |",
             "| --- | ---: | --- | ---: | ---: | --- |"]
    for r in doc["results"]:
        v2 = f" ({fmt(r['value2'])} {r.get('unit2', '')})" if "value2" in r else ""
        lines.append(f"| {r['name']} | {fmt(r['value'])}{v2} | {r['unit']} | {fmt(r['median_ms'])} | "
                     f"{fmt(r['min_ms'])} | {r.get('note', '')} |")
    for f in (doc.get("extra") or {}).get("failed", []):
        lines.append(f"| {f['name']} | — | | | | {f['note']} |")
    return "\n".join(lines) + "\n" + (f"\n{text.rstrip()}\n" if text else "")


def _finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _nulled(v, where, notes):
    """`v` with every non-finite float replaced by None, each noted in `notes` by its place."""
    if isinstance(v, float) and not math.isfinite(v):
        notes.append(f"{where}: {v}")
        return None
    if isinstance(v, dict):
        return {k: _nulled(x, f"{where}.{k}" if where else str(k), notes) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nulled(x, f"{where}[{i}]", notes) for i, x in enumerate(v)]
    return v


def stored_results(doc):
    """`doc` as the results format stores it (results_file.ts storedResults): JSON has no
    NaN or infinity, so a row whose value is not finite (an infinite PSNR: identical images)
    goes to extra["failed"] with its note and value, a non-finite value2 is dropped (the note
    says so), and any other non-finite number (a per-image PSNR under extra) becomes null,
    extra["non_finite"] listing where and what it was."""
    results = doc.get("results", [])
    failed = [{"name": r["name"], "unit": r["unit"],
               "note": "; ".join(x for x in [r.get("note"), f"value {r['value']} not stored"] if x)}
              for r in results if not _finite(r["value"])]
    rows = []
    for r in results:
        if not _finite(r["value"]):
            continue
        if "value2" in r and not _finite(r["value2"]):
            unit2 = f" ({r['unit2']})" if r.get("unit2") else ""
            why = f"no value2{unit2}: {r['value2']} omitted"
            r = {k: v for k, v in r.items() if k not in ("value2", "unit2")}
            r["note"] = f"{r['note']}; {why}" if r.get("note") else why
        rows.append(r)
    out = {**doc, "results": rows} if "results" in doc else dict(doc)
    extra = dict(out.get("extra") or {})
    if failed:
        extra["failed"] = [*extra.get("failed", []), *failed]
    notes = []
    extra = _nulled(extra, "", notes)
    if notes:
        extra["non_finite"] = [*extra.get("non_finite", []), *notes]
    if extra or "extra" in out:
        out["extra"] = extra
    return out


def write_results(path, doc, text=""):
    """Writes `path` (a .json: stored_results of `doc`) and the .md table beside it; returns
    the .md's path. Both texts are made before either file is opened, so a document that
    cannot be stored leaves no empty file."""
    stored = stored_results(doc)
    body = json.dumps(stored, indent=2, allow_nan=False) + "\n"
    md_text = results_markdown(stored, text)
    md = re.sub(r"\.json$", "", path) + ".md"
    with open(path, "w") as f:
        f.write(body)
    with open(md, "w") as f:
        f.write(md_text)
    return md


if __name__ == "__main__":
    import tempfile
    a = peer_arg_parser(20, 5).parse_args(["--commit", "abc1234"])
    assert (a.commit, a.out_dir, a.iters, a.warmup) == ("abc1234", "bench/results", 20, 5), a
    os.environ.pop("WEBDIT_GPU_DRIVER", None)
    assert gpu_driver("host CPU (x)") is None
    os.environ["WEBDIT_GPU_DRIVER"] = "NVIDIA 1.2"
    assert gpu_driver("host CPU (x)") is None and "driver" not in results_header("host CPU (x)", "a", "c")
    h = results_header("NVIDIA H200", "pytorch-cuda", "python3 x", commit="abc1234", date="2026-11-29")
    assert h == {"device": "NVIDIA H200", "adapter": "pytorch-cuda", "commit": "abc1234", "date": "2026-11-29",
                 "command": "python3 x", "driver": "NVIDIA 1.2"}, h
    assert "deno" not in h
    doc = {**h, "results": [figure_row("probe_w4a8", 31.234, "dB", "PSNR min 29"),
                            {"name": "t_ms", "value": 2.5, "unit": "ms", "median_ms": 2.5, "min_ms": 2.4}]}
    assert doc["results"][0] == {"name": "probe_w4a8", "value": 31.234, "unit": "dB", "median_ms": 0,
                                 "min_ms": 0, "note": "PSNR min 29"}
    with tempfile.TemporaryDirectory() as d:
        md = write_results(os.path.join(d, "2026-11-29_x.json"), doc, "notes")
        text = open(md).read()
        assert "| probe_w4a8 | 31.2 | dB | 0 | 0 | PSNR min 29 |" in text, text
        assert "driver NVIDIA 1.2" in text and text.endswith("\nnotes\n"), text
        assert json.load(open(os.path.join(d, "2026-11-29_x.json"))) == doc
        row = timing_row("t", [3.0, 1.0, 2.0], "3 samples")
        assert row == {"name": "t", "value": 2.0, "unit": "ms", "median_ms": 2.0, "min_ms": 1.0, "note": "3 samples"}
        tdoc, base = write_torch_results(d, "torch_x", "NVIDIA H200", "python3 x", "abc1234", [row],
                                         {"torch": "2.11", "cuda": "13.0", "notes": "a note"}, date="2026-11-29")
        assert base == os.path.join(d, "nvidia-h200", "2026-11-29_torch_x"), base
        assert json.load(open(base + ".json")) == tdoc and tdoc["adapter"] == "pytorch-cuda"
        assert open(base + ".md").read().endswith("\na note\n\ntorch 2.11, CUDA 13.0.\n")
        # An infinite PSNR (identical images): the row goes to extra.failed, per-image values
        # become null with a note, value2 inf is dropped; nothing raises, no empty file.
        inf = float("inf")
        bad = {**h, "results": [figure_row("probe_same", inf, "dB", "mean PSNR"),
                                {**figure_row("probe_ok", 30.0, "dB"), "value2": inf, "unit2": "x"}],
               "extra": {"rows": {"probe_same": {"psnr_min": inf, "psnr_images": [inf, 31.5]}}}}
        path = os.path.join(d, "2026-11-29_inf.json")
        md = write_results(path, bad)
        got = json.load(open(path))
        assert [r["name"] for r in got["results"]] == ["probe_ok"], got
        assert got["results"][0]["note"] == "no value2 (x): inf omitted" and "value2" not in got["results"][0]
        assert got["extra"]["failed"] == [{"name": "probe_same", "unit": "dB",
                                           "note": "mean PSNR; value inf not stored"}], got
        assert got["extra"]["rows"]["probe_same"] == {"psnr_min": None, "psnr_images": [None, 31.5]}, got
        assert got["extra"]["non_finite"] == ["rows.probe_same.psnr_min: inf",
                                              "rows.probe_same.psnr_images[0]: inf"], got
        assert "| probe_same | — | | | | mean PSNR; value inf not stored |" in open(md).read()
        assert bad["results"][0]["value"] == inf  # the caller's document is left as it was
        # A document JSON cannot hold at all leaves no file behind.
        try:
            write_results(os.path.join(d, "2026-11-29_obj.json"), {**doc, "extra": {"x": object()}})
            raise AssertionError("expected a TypeError")
        except TypeError:
            pass
        assert not os.path.exists(os.path.join(d, "2026-11-29_obj.json"))
    print("ok")
