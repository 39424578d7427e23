/**
 * Weight-side figures of the quantizers (issue 5), computed on the host: per quantized
 * layer of a model, the weight SQNR of TLQ (METHODS.md's percentile grids, and the grids
 * fitted by least squares, `fit: "mse"`) and uniform at W3 and W4 (the share of layers
 * where TLQ wins), and kmeans (each row's optimal levels: the least error of any per-row grid), the extra error of TLQ's int8 LUT re-expression, the bytes the kernels
 * hold per path against f32 (TLQ: the compact parameters uploadQWeight uses by default, and
 * the LUT modes for comparison), and the time the quantizers take — plus the same SQNR
 * comparison on Student-t weights (heavy tails, like trained DiT weights).
 *
 *     deno run -A bench/quant_weights.ts [--model models/emoji-s-b ...] [--write]
 *
 * With --write: `bench/results/host/<date>_quant_weights.{json,md}` (no GPU involved).
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { HostMatrix, QuantizedWeight } from "../plugins/types.ts";
import { kmeansQuantize } from "../plugins/quantizers/kmeans.ts";
import { lutDequantize, tlqQuantize } from "../plugins/quantizers/tlq.ts";
import { uniformDequantize, uniformQuantize } from "../plugins/quantizers/uniform.ts";
import { Prng } from "../runtime/io/prng.ts";
import { openCheckpoint } from "../runtime/io/safetensors_index.ts";
import { DEFAULT_KEEP_FP, keepPattern } from "../runtime/quant/plan.ts";
import { quantizedBytes } from "../runtime/quant/quantize.ts";
import { int8LutError } from "../runtime/reference/qgemm.ts";
import {
  type BenchResult,
  figureRow,
  fmt,
  gitCommit,
  type ResultsFile,
  resultsHeader,
  today,
  writeResults,
} from "./harness.ts";

function sqnr(w: Float32Array, h: Float32Array): number {
  let s = 0;
  let e = 0;
  for (let i = 0; i < w.length; i++) {
    s += w[i] * w[i];
    e += (w[i] - h[i]) ** 2;
  }
  return 10 * Math.log10(s / e);
}

/** Kurtosis of the weights (3 for a Gaussian, 1.8 for a uniform distribution). */
function kurtosis(w: Float32Array): number {
  let m = 0;
  for (const v of w) m += v;
  m /= w.length;
  let s2 = 0;
  let s4 = 0;
  for (const v of w) {
    s2 += (v - m) ** 2;
    s4 += (v - m) ** 4;
  }
  s2 /= w.length;
  return s4 / w.length / (s2 * s2);
}

/** Per-model weight figures. */
export interface Summary {
  model: string;
  layers: number;
  kurtosis_median: number;
  tlq_wins_w3: number;
  tlq_wins_w4: number;
  /** The same with TLQ's grids fitted by least squares (`fit: "mse"`). */
  tlq_mse_wins_w3: number;
  tlq_mse_wins_w4: number;
  sqnr_mean: Record<string, number>;
  int8_lut_error_mean_w4: number;
  bytes_f32: number;
  bytes: Record<string, number>;
  ms: Record<string, number>;
}

async function modelLayers(model: string): Promise<{ name: string; w: HostMatrix }[]> {
  const src = await openCheckpoint(`${model}/transformer`);
  try {
    const out: { name: string; w: HostMatrix }[] = [];
    for (const [t, info] of src.tensors) {
      if (!t.endsWith(".weight") || info.shape.length < 2) continue;
      const name = t.slice(0, -".weight".length);
      if (keepPattern(name, DEFAULT_KEEP_FP)) continue;
      const cols = info.shape.slice(1).reduce((a, b) => a * b, 1);
      out.push({ name, w: { data: await src.readF32(t), rows: info.shape[0], cols } });
    }
    return out;
  } finally {
    src.close();
  }
}

function studentT(rows: number, cols: number, nu: number, seed: number): HostMatrix {
  const g = new Prng(seed);
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) {
    let c = 0;
    for (let j = 0; j < nu; j++) c += g.normal() ** 2;
    data[i] = (0.02 * g.normal()) / Math.sqrt(c / nu);
  }
  return { data, rows, cols };
}

/** The weight figures of one model. */
function summarize(model: string, layers: { name: string; w: HostMatrix }[]): Summary {
  const s: Summary = {
    model,
    layers: layers.length,
    kurtosis_median: 0,
    tlq_wins_w3: 0,
    tlq_wins_w4: 0,
    tlq_mse_wins_w3: 0,
    tlq_mse_wins_w4: 0,
    sqnr_mean: {},
    int8_lut_error_mean_w4: 0,
    bytes_f32: 0,
    bytes: {},
    ms: {},
  };
  const add = (r: Record<string, number>, k: string, v: number) => (r[k] = (r[k] ?? 0) + v);
  const ks: number[] = [];
  for (const { w } of layers) {
    ks.push(kurtosis(w.data));
    s.bytes_f32 += 4 * w.rows * w.cols;
    const sq: Record<string, number> = {};
    for (const bits of [3, 4]) {
      const quantizers: [string, (w: HostMatrix) => QuantizedWeight, typeof lutDequantize][] = [
        ["uniform", (w) => uniformQuantize(w, { bits }), uniformDequantize],
        ["tlq", (w) => tlqQuantize(w, { bits }), lutDequantize],
        ["tlq_mse", (w) => tlqQuantize(w, { bits, fit: "mse" }), lutDequantize],
        ["kmeans", (w) => kmeansQuantize(w, { bits }), lutDequantize],
      ];
      for (const [name, f, d] of quantizers) {
        const t0 = performance.now();
        const q = f(w);
        add(s.ms, `${name}_w${bits}`, performance.now() - t0);
        const h = d(q);
        sq[`${name}_w${bits}`] = sqnr(w.data, h);
        add(s.sqnr_mean, `${name}_w${bits}`, sq[`${name}_w${bits}`] / layers.length);
        if (bits === 4 && (name === "uniform" || name === "tlq")) {
          add(s.bytes, `${name}_w4a16`, quantizedBytes(q, 16));
          add(s.bytes, `${name}_w4a8`, quantizedBytes(q, 8));
          if (name === "tlq") {
            s.int8_lut_error_mean_w4 += int8LutError(q, h) / layers.length;
            add(s.bytes, "tlq_w4a16_lut", quantizedBytes(q, 16, "lut"));
            add(s.bytes, "tlq_w4a8_lut", quantizedBytes(q, 8, "lut"));
          }
        }
      }
    }
    if (sq.tlq_w3 > sq.uniform_w3) s.tlq_wins_w3++;
    if (sq.tlq_w4 > sq.uniform_w4) s.tlq_wins_w4++;
    if (sq.tlq_mse_w3 > sq.uniform_w3) s.tlq_mse_wins_w3++;
    if (sq.tlq_mse_w4 > sq.uniform_w4) s.tlq_mse_wins_w4++;
  }
  ks.sort((a, b) => a - b);
  s.kurtosis_median = ks[Math.floor(ks.length / 2)];
  return s;
}

/**
 * One model's summary as results rows (BENCHMARKS.md "Results format"), named
 * `quant_weights_<model>_<figure>`: figures, not times ({@linkcode figureRow}).
 */
export function summaryResults(s: Summary): BenchResult[] {
  const n = `quant_weights_${s.model.replace(/[^a-z0-9]+/gi, "_").toLowerCase()}`;
  return [
    figureRow(`${n}_tlq_wins_w3`, (100 * s.tlq_wins_w3) / s.layers, "% of layers"),
    figureRow(`${n}_tlq_wins_w4`, (100 * s.tlq_wins_w4) / s.layers, "% of layers"),
    ...[3, 4].map((b) =>
      figureRow(
        `${n}_tlq_mse_wins_w${b}`,
        (100 * s[b === 3 ? "tlq_mse_wins_w3" : "tlq_mse_wins_w4"]) / s.layers,
        "% of layers",
      )
    ),
    ...Object.entries(s.sqnr_mean).map(([k, v]) => figureRow(`${n}_sqnr_${k}`, v, "dB")),
    ...Object.entries(s.bytes).map(([k, v]) =>
      figureRow(`${n}_bytes_ratio_${k}`, s.bytes_f32 / v, "× smaller than f32")
    ),
    figureRow(`${n}_tlq_int8_lut_error_w4`, s.int8_lut_error_mean_w4, "relative"),
    figureRow(`${n}_kurtosis_median`, s.kurtosis_median, "dimensionless"),
  ];
}

/**
 * The results file of a run (results_file.ts's header, the host CPU as its device, no WebGPU
 * adapter): figures as rows, the per-model summaries in `extra.summaries`.
 */
export async function quantWeightsFile(
  out: Summary[],
  head: { commit: string; command: string },
): Promise<ResultsFile> {
  const cpu = await Deno.readTextFile("/proc/cpuinfo").then(
    (t) => t.match(/^model name\s*:\s*(.+)$/m)?.[1].trim(),
    () => undefined,
  );
  return {
    ...resultsHeader(`host CPU${cpu ? ` (${cpu})` : ""}`, head.commit, head.command),
    adapter: "none (host)",
    results: out.flatMap(summaryResults),
    extra: { summaries: out },
  };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      model: {
        type: "string",
        multiple: true,
        default: ["models/emoji-s", "models/emoji-s-a", "models/emoji-s-b"],
      },
      write: { type: "boolean", default: false },
    },
  });
  const out: Summary[] = [];
  for (const m of v.model!) out.push(summarize(m.split("/").pop()!, await modelLayers(m)));
  const synth = [3, 5].map((nu, i) => ({ name: `t${nu}_${i}`, w: studentT(384, 1152, nu, 7 + i) }));
  out.push(summarize("student_t_nu3_nu5_384x1152", synth));
  const rows = out.map((s) =>
    `| ${s.model} | ${s.layers} | ${
      fmt(s.kurtosis_median)
    } | ${s.tlq_wins_w3}/${s.layers} | ${s.tlq_wins_w4}/${s.layers} | ${s.tlq_mse_wins_w3}/${s.layers} | ${s.tlq_mse_wins_w4}/${s.layers} | ${
      [
        "uniform_w3",
        "tlq_w3",
        "tlq_mse_w3",
        "kmeans_w3",
        "uniform_w4",
        "tlq_w4",
        "tlq_mse_w4",
        "kmeans_w4",
      ].map((k) => fmt(s.sqnr_mean[k])).join(" | ")
    } | ${s.int8_lut_error_mean_w4.toExponential(2)} | 1/${
      fmt(s.bytes_f32 / s.bytes.uniform_w4a8)
    } | 1/${fmt(s.bytes_f32 / s.bytes.tlq_w4a16)} | 1/${fmt(s.bytes_f32 / s.bytes.tlq_w4a8)} | 1/${
      fmt(s.bytes_f32 / s.bytes.tlq_w4a16_lut)
    } / 1/${fmt(s.bytes_f32 / s.bytes.tlq_w4a8_lut)} | ${fmt(s.ms.tlq_w3 / 1000)} / ${
      fmt(s.ms.tlq_mse_w3 / 1000)
    } / ${fmt(s.ms.uniform_w3 / 1000)} / ${fmt(s.ms.kmeans_w3 / 1000)} |`
  );
  const md = [
    `# ${today()} — weight quantizers on the host (no GPU), commit ${await gitCommit()}`,
    "",
    "`deno run -A bench/quant_weights.ts --write`. SQNR = 10·log10(Σw²/Σ(ŵ−w)²) per quantized layer",
    "(default keep-FP layers excluded), mean over layers. Bytes: codes + the parameters the kernels",
    "read, against f32: uniform W4 per row scale and zero; TLQ W4A16 and W4A8 as uploaded by default",
    "(compact: Δ± f16 + z± i16 = 8 B per row, η 4 B per layer; the LUTs rebuilt in-kernel, MODE 5/6);",
    "TLQ LUT modes (MODE 0/2, before): 16-entry f32 LUT per row / int8 LUT + f32 row scale.",
    "TLQ is METHODS.md's grid (lo = min L, hi = the p-th percentile); \"TLQ mse\" fits each row's",
    '(Δ, z) to least squared error (`quantize --tlq-fit mse`; same format and bytes). "kmeans" is',
    "each row's optimal 2^b levels (exact 1-D k-means, `quantize --quantizer kmeans`): the least",
    "weight error any per-row grid reaches, the ceiling of TLQ's and uniform's.",
    "Times: TLQ (η × p± search) / TLQ mse / uniform (clip search) / kmeans, whole model, s.",
    "",
    "| model | layers | kurtosis (median) | TLQ > uniform W3 | W4 | TLQ mse > uniform W3 | W4 | SQNR uniform W3 | TLQ W3 | TLQ mse W3 | kmeans W3 | uniform W4 | TLQ W4 | TLQ mse W4 | kmeans W4 | TLQ int8-LUT extra error W4 | bytes uniform W4A8 | TLQ W4A16 | TLQ W4A8 | TLQ LUT modes W4A16 / W4A8 | quantize s TLQ / TLQ mse / uniform / kmeans (W3) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows,
  ].join("\n") + "\n";
  console.log(md);
  if (v.write) {
    const file = await quantWeightsFile(out, {
      commit: await gitCommit(),
      command: `deno run -A bench/quant_weights.ts ${Deno.args.join(" ")}`.trim(),
    });
    const p = await writeResults("host", "quant_weights", file, undefined, () => md);
    console.error(`wrote ${p.json} and .md`);
  }
}
