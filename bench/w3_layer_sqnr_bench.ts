/**
 * TLQ's edge over uniform at W3, layer by layer, under #6's W3A8 plan (GPTQ, centred,
 * adaptive rotation), with and without the rank-32 branch (hessian fit): each quantized
 * layer's weight SQNR (codes + branch against W') and output SQNR on the calibration inputs
 * (plain rounding, and GPTQ's codes; with a branch, of the rest the codes quantize, as
 * quantize's per-layer report gives it), from that report. The image-level
 * criterion (TLQ ≥ uniform + 2 dB PSNR) has to come from edges like these; this shows how large
 * they are on a model. Host and GPU as quantize uses them (GPTQ on the GPU where there is one).
 *
 *     deno run -A bench/w3_layer_sqnr_bench.ts [--model DIR] [--write]
 *
 * With --write: `bench/results/<adapter>/<date>_w3_layer_sqnr.{json,md}`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import { quantizeModel } from "../runtime/quant/quantize.ts";
import type { LayerReport } from "../runtime/quant/report.ts";
import {
  type BenchResult,
  deviceSlug,
  figureRow,
  gitCommit,
  resultsHeader,
  writeResults,
} from "./results_file.ts";

/** Mean of `f` over the layers that have it. */
function mean(layers: LayerReport[], f: (l: LayerReport) => number | null | undefined): number {
  const v = layers.map(f).filter((x): x is number => typeof x === "number" && isFinite(x));
  return v.reduce((a, b) => a + b, 0) / v.length;
}

/** One dB row, to 3 decimals. */
function dbRow(name: string, value: number, note: string): BenchResult {
  return figureRow(name, Number(value.toFixed(3)), "dB", note);
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: { model: { type: "string" }, write: { type: "boolean" } },
  });
  const rt = await createRuntime({ adapter: "auto" });
  const results: BenchResult[] = [];
  try {
    for (const rank of [0, 32]) {
      const per: Record<string, LayerReport[]> = {};
      for (const quantizer of ["tlq", "uniform"] as const) {
        const r = await quantizeModel({
          ...(v.model ? { model: v.model } : {}),
          quantizer,
          wbits: 3,
          abits: 8,
          rotation: "adaptive",
          gptq: true,
          center: "mean",
          ...(quantizer === "tlq" ? { tlqFit: "mse" as const } : {}),
          ...(rank ? { lowRank: rank } : {}),
          runtime: rt,
        });
        per[quantizer] = r.layers.filter((l) => l.quantizer !== "fp");
      }
      const [t, u] = [per.tlq, per.uniform];
      const plan = `W3A8 GPTQ centred adaptive${rank ? `, R ${rank} hessian` : ", no branch"}`;
      const tag = rank ? `r${rank}` : "r0";
      const rest = rank ? ", of the rest" : "";
      const figures: [string, (l: LayerReport) => number | null | undefined, string][] = [
        ["weight", (l) => l.sqnrDb, "codes + branch against W'"],
        ["out_round", (l) => l.outSqnrRtnDb, `output, plain rounding${rest}`],
        ["out_gptq", (l) => l.outSqnrDb, `output, GPTQ${rest}`],
      ];
      for (const [what, f, of] of figures) {
        const edges = t.map((l, i) => (f(l) ?? NaN) - (f(u[i]) ?? NaN));
        const wins = edges.filter((e) => e > 0).length;
        const [mt, mu] = [mean(t, f), mean(u, f)];
        const where = `${plan}; ${of}; mean over ${t.length} layers`;
        results.push(dbRow(`w3_${tag}_${what}_sqnr_tlq`, mt, where));
        results.push(dbRow(`w3_${tag}_${what}_sqnr_uniform`, mu, where));
        results.push(
          dbRow(
            `w3_${tag}_${what}_sqnr_tlq_edge`,
            mt - mu,
            `${plan}; ${of}; TLQ ahead on ${wins}/${edges.length} layers, largest ${
              Math.max(...edges).toFixed(2)
            } dB`,
          ),
        );
        console.log(
          `${plan}, ${what} SQNR: TLQ ${mt.toFixed(2)}, uniform ${mu.toFixed(2)} dB ` +
            `(edge ${(mt - mu).toFixed(2)}; TLQ ahead on ${wins}/${edges.length} layers)`,
        );
      }
    }
    if (v.write) {
      const device = rt.info.description || "unknown adapter";
      const file = {
        ...resultsHeader(device, await gitCommit()),
        results,
        extra: { model: v.model ?? "models/emoji-s", calibration: "quantize's default prompts" },
      };
      const out = await writeResults(deviceSlug(device, rt.info.fallback), "w3_layer_sqnr", file);
      console.log(`wrote ${out.json}`);
    }
  } finally {
    rt.destroy();
  }
}
