/**
 * How much a rotation plan depends on its random draw, per layer, on held-out calibration
 * rows: the W4A4 plan's activation quantizer (A4, groups of 16, asymmetric; centred per
 * sample, CFG delta) on the bundled model's block linears. The calibration keeps 512 rows a
 * layer (the quantizer's own too); the rotations are planned on one half and measured on the
 * other (runtime/quant/rotation_error.ts rotationErrors, weights exact, unsmoothed). Three
 * figures:
 *
 * - `seed_sd_*`: the spread over seeds of one layer's held-out error (sd / mean, averaged over
 *   the layers), outlier-aware at 64, 128 (default) and 256 greedy rows, and Hadamard;
 * - `picked_seed_*`: the held-out error of the seed whose error was least on the planning half,
 *   against the seeds' mean (geometric mean over the layers; negative: picking helps);
 * - `held_out_error_*`: the mean held-out error itself.
 *
 * This is a probe of per-layer errors, not of images: the end-to-end effect needs an ablation
 * (bench/ablation.ts with `rotation_seed`).
 *
 *     deno run -A tools/rotation_seed_probe.ts [--seeds 8] [--write]
 *
 * With --write: `bench/results/<device slug>/<date>_rotation_seed_probe.{json,md}`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { planHadamard } from "../plugins/rotations/hadamard.ts";
import { planOutlier } from "../plugins/rotations/outlier_aware.ts";
import type { RotationLayerInput } from "../plugins/types.ts";
import { createRuntime } from "../runtime/gpu/device.ts";
import { DEFAULT_MODEL_DIR } from "../runtime/pipeline.ts";
import type { LayerRotation } from "../runtime/quant/rotation.ts";
import { calibrate, type LayerStats } from "../runtime/quant/calibrate.ts";
import { centredStats } from "../runtime/quant/centred_stats.ts";
import { rotationErrors } from "../runtime/quant/rotation_error.ts";
import { readLinearWeights } from "../runtime/quant/rotation_plan.ts";
import {
  type BenchResult,
  deviceSlug,
  figureRow,
  gitCommit,
  resultsHeader,
  writeResults,
} from "../bench/results_file.ts";

const ACT = { bits: 4, group: 16, asym: true };

/** Rows [from, from + n) of a layer's sample (and of its quantizer's rows). */
function rowsOf(s: LayerStats, from: number, n: number): LayerStats {
  const K = s.cols;
  const cut = (a: Float32Array) => a.slice(from * K, (from + n) * K);
  return { ...s, sample: cut(s.sample), quantSample: cut(s.quantSample!), sampleRows: n };
}

/** A probe row (a relative error or a share), to 5 decimals. */
function row(name: string, value: number, unit: string, note: string): BenchResult {
  return figureRow(name, Number(value.toFixed(5)), unit, note);
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: { seeds: { type: "string", default: "8" }, write: { type: "boolean" } },
  });
  const seeds = Number(v.seeds);
  if (!Number.isInteger(seeds) || seeds < 2) throw new RangeError("--seeds must be an integer ≥ 2");
  const rt = await createRuntime({ adapter: "auto" });
  const device = rt.info.description || "unknown adapter";
  const slug = deviceSlug(device, rt.info.fallback);
  const stats = await calibrate(rt, {
    sampleRows: 512,
    quantInput: { center: "mean", cfgDelta: true },
  }).finally(() => rt.destroy());
  const names = [...stats.layers.keys()].filter((n) => n.startsWith("transformer_blocks."));
  const weights = await readLinearWeights(DEFAULT_MODEL_DIR, names);
  const plans: [string, (i: RotationLayerInput) => LayerRotation, number?][] = [
    ["outlier_rows64", planOutlier, 64],
    ["outlier_rows128", planOutlier, 128],
    ["outlier_rows256", planOutlier, 256],
    ["hadamard", planHadamard],
  ];
  const results: BenchResult[] = [];
  for (const [what, plan, greedyRows] of plans) {
    let [sd, picked, err, layers] = [0, 0, 0, 0];
    for (const name of names) {
      const s = centredStats(stats.layers.get(name)!);
      const half = Math.floor(s.sampleRows / 2);
      const [fit, held] = [rowsOf(s, 0, half), rowsOf(s, half, half)];
      const w = weights.get(name)!;
      const inSample: number[] = [];
      const heldOut: number[] = [];
      for (let seed = 0; seed < seeds; seed++) {
        const rotation = what === "hadamard" ? "hadamard" as const : "outlier" as const;
        const p = plan({
          name,
          weight: w,
          stats: fit,
          options: { rotation, smooth: false, seed, ...(greedyRows ? { greedyRows } : {}) },
        });
        inSample.push(rotationErrors(p, fit, w, ACT).after);
        heldOut.push(rotationErrors(p, held, w, ACT).after);
      }
      const m = heldOut.reduce((a, b) => a + b) / seeds;
      sd += Math.sqrt(heldOut.reduce((a, b) => a + (b - m) ** 2, 0) / (seeds - 1)) / m;
      picked += Math.log(heldOut[inSample.indexOf(Math.min(...inSample))] / m);
      err += m;
      layers++;
    }
    const note = `${layers} block linears, ${seeds} seeds, ${
      stats.layers.get(names[0])!.sampleRows
    } rows split in halves`;
    results.push(
      row(
        `seed_sd_${what}`,
        (100 * sd) / layers,
        "%",
        `${note}; sd/mean of a layer's held-out error`,
      ),
    );
    results.push(
      row(
        `picked_seed_${what}`,
        100 * (Math.exp(picked / layers) - 1),
        "%",
        `${note}; in-sample-best seed vs the seeds' mean`,
      ),
    );
    results.push(
      row(
        `held_out_error_${what}`,
        err / layers,
        "rel",
        `${note}; A4 g16 asym, centred, CFG delta`,
      ),
    );
    console.log(
      `${what}: seed sd ${((100 * sd) / layers).toFixed(2)} %, picked seed ${
        (100 * (Math.exp(picked / layers) - 1)).toFixed(2)
      } %, held-out error ${(err / layers).toFixed(5)}`,
    );
  }
  if (v.write) {
    const file = {
      ...resultsHeader(device, await gitCommit()),
      results,
      extra: { model: "models/emoji-s", calibration: "quantize's default prompts, 512 rows" },
    };
    const out = await writeResults(slug, "rotation_seed_probe", file);
    console.log(`wrote ${out.json}`);
  }
}
