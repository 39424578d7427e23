/**
 * What `quantize --gptq-refit` gains, layer by layer: each built-in quantizer (uniform, TLQ with
 * fitted grids, kmeans) at W3 and W4 under the GPTQ plan without a branch (A8, centred, adaptive),
 * quantized with and without the refit; each layer's output SQNR on the calibration inputs with
 * GPTQ's codes (quantize's per-layer report: with the refit, of the refitted levels). The codes are
 * the same both ways, so the difference is the levels' alone. Host and GPU as quantize uses them.
 *
 *     deno run -A bench/gptq_refit_bench.ts [--model DIR] [--write]
 *
 * With --write: `bench/results/<adapter>/<date>_gptq_refit.{json,md}`.
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

/** Mean output SQNR (GPTQ's codes) over the quantized layers. */
function meanOut(layers: LayerReport[]): number {
  const v = layers.map((l) => l.outSqnrDb).filter((x): x is number => Number.isFinite(x));
  return v.reduce((a, b) => a + b, 0) / v.length;
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: { model: { type: "string" }, write: { type: "boolean" } },
  });
  const rt = await createRuntime({ adapter: "auto" });
  const results: BenchResult[] = [];
  const plan = "A8, GPTQ, centred (mean), adaptive, no branch";
  try {
    for (const wbits of [3, 4]) {
      for (const quantizer of ["uniform", "tlq", "kmeans"] as const) {
        const per: LayerReport[][] = [];
        for (const gptqRefit of [false, true]) {
          const r = await quantizeModel({
            ...(v.model ? { model: v.model } : {}),
            quantizer,
            wbits,
            abits: 8,
            rotation: "adaptive",
            gptq: true,
            gptqSqnr: true,
            gptqRefit,
            center: "mean",
            ...(quantizer === "tlq" ? { tlqFit: "mse" as const } : {}),
            runtime: rt,
          });
          per.push(r.layers.filter((l) => l.quantizer !== "fp"));
        }
        const [plain, refit] = per;
        const gains = refit.map((l, i) => l.outSqnrDb! - plain[i].outSqnrDb!);
        const [m0, m1] = [meanOut(plain), meanOut(refit)];
        const wins = gains.filter((g) => g > 0).length;
        const name = `w${wbits}_${quantizer}`;
        const where =
          `W${wbits}${plan}; output SQNR of GPTQ's codes, mean over ${plain.length} layers`;
        results.push(figureRow(`${name}_out_sqnr`, Number(m0.toFixed(3)), "dB", where));
        results.push(figureRow(`${name}_out_sqnr_refit`, Number(m1.toFixed(3)), "dB", where));
        results.push(
          figureRow(
            `${name}_refit_gain`,
            Number((m1 - m0).toFixed(3)),
            "dB",
            `${where}; higher on ${wins}/${gains.length} layers, largest ${
              Math.max(...gains).toFixed(2)
            } dB`,
          ),
        );
        console.log(
          `${quantizer} W${wbits}A8: output SQNR ${m0.toFixed(2)} → ${m1.toFixed(2)} dB with the ` +
            `refit (+${(m1 - m0).toFixed(2)}; higher on ${wins}/${gains.length} layers)`,
        );
      }
    }
    if (v.write) {
      const device = rt.info.description || "unknown adapter";
      const file = {
        ...resultsHeader(device, await gitCommit()),
        results,
        extra: { model: v.model ?? "models/emoji-s", plan, calibration: "quantize's default" },
      };
      const out = await writeResults(deviceSlug(device, rt.info.fallback), "gptq_refit", file);
      console.log(`wrote ${out.json}`);
    }
  } finally {
    rt.destroy();
  }
}
