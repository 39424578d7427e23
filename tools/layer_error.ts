/**
 * Per-layer W·A error of the rotation choices on a model's own calibration sample: for each
 * transformer-block linear (by default those with input RMS J ≥ 1, the layers ARS sends to
 * the outlier branch at τ = 1), the relative L2 error of Q_a(X·R)·deq(Q_w(W·R))ᵀ against
 * X·Wᵀ, with TLQ weights and per-token symmetric activations, for no rotation, hadamard and
 * outlier-aware (METHODS.md §2), with the default smoothing (α = 0.5) and without it. A
 * quick way to see what a rotation does to a layer before a whole ablation run (which, on
 * the bundled model, amplifies every per-layer error through 20 guided steps).
 *
 *     deno run -A tools/layer_error.ts [--model DIR] [--wbits 4] [--abits 4] [--rows 64] [--all]
 *
 * The calibration statistics come from runtime/quant/calibrate.ts (cached per model).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import { calibrate, layerJ } from "../runtime/quant/calibrate.ts";
import type { LayerRotation } from "../runtime/quant/rotation.ts";
import { readLinearWeights } from "../runtime/quant/rotation_plan.ts";
import { planOutlier } from "../plugins/rotations/outlier_aware.ts";
import { planHadamard } from "../plugins/rotations/hadamard.ts";
import { tlqQuantizer } from "../plugins/quantizers/tlq.ts";
import { actDequantRef, actQuantRef } from "../runtime/reference/act_quant.ts";
import { gemmRef } from "../runtime/reference/gemm.ts";
import type { HostMatrix, RotationLayerInput } from "../plugins/types.ts";

/** Per-token symmetric quantization of x [R, K] at `bits`, dequantized (act_quant.wgsl's). */
function fakeQuantRows(x: Float32Array, R: number, K: number, bits: number): Float32Array {
  const q = actQuantRef(x, R, K, bits);
  return actDequantRef(q.codes, q.scales, R, K);
}

const VARIANTS: Record<string, ((i: RotationLayerInput) => LayerRotation) | null> = {
  none: null,
  hadamard: (i) => planHadamard(i),
  outlier: (i) => planOutlier(i),
  hadamard_nosmooth: (i) => planHadamard({ ...i, options: { ...i.options, smooth: false } }),
  outlier_nosmooth: (i) => planOutlier({ ...i, options: { ...i.options, smooth: false } }),
};

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "models/emoji-s" },
      wbits: { type: "string", default: "4" },
      abits: { type: "string", default: "4" },
      rows: { type: "string", default: "64" },
      all: { type: "boolean", default: false },
    },
  });
  const [wbits, abits, maxRows] = [Number(v.wbits), Number(v.abits), Number(v.rows)];
  const rt = await createRuntime();
  const stats = await calibrate(rt, { path: v.model }).finally(() => rt.destroy());
  const names = [...stats.layers.keys()].filter((n) =>
    n.startsWith("transformer_blocks") && (v.all || layerJ(stats.layers.get(n)!) >= 1)
  );
  const weights = await readLinearWeights(v.model!, names);
  const sums: Record<string, number> = Object.fromEntries(Object.keys(VARIANTS).map((k) => [k, 0]));
  console.log(`layer · relative output error at W${wbits}A${abits} (TLQ weights, per-token A)`);
  for (const name of names) {
    const st = stats.layers.get(name)!;
    const w: HostMatrix = weights.get(name)!;
    const K = st.cols;
    const R = Math.min(maxRows, st.sampleRows);
    const x = st.sample.slice(0, R * K);
    const ref = gemmRef(x, w.data, R, w.rows, K);
    const refNorm = Math.sqrt(ref.reduce((a, b) => a + b * b, 0));
    const cells: string[] = [];
    for (const [key, plan] of Object.entries(VARIANTS)) {
      const rot = plan?.({ name, weight: w, stats: st, options: { rotation: "adaptive" } });
      const wq = tlqQuantizer.dequantize(
        tlqQuantizer.calibrate(rot ? rot.transformWeight(w) : w, { bits: wbits }),
      );
      const xq = fakeQuantRows(rot ? rot.transformActivations(x, R) : x, R, K, abits);
      const y = gemmRef(xq, wq, R, w.rows, K);
      let e = 0;
      for (let i = 0; i < y.length; i++) e += (y[i] - ref[i]) ** 2;
      const rel = Math.sqrt(e) / refNorm;
      sums[key] += rel;
      cells.push(`${key} ${rel.toFixed(3)}`);
    }
    console.log(`${name}  ${cells.join("  ")}`);
  }
  console.log(
    `mean over ${names.length} layers: ` +
      Object.entries(sums).map(([k, s]) => `${k} ${(s / names.length).toFixed(4)}`).join("  "),
  );
}
