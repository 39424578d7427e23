import { assert, assertClose } from "../../tests/assert.ts";
import { randomWeight, salientRows } from "../../plugins/rotations/test_util.ts";
import { planHadamard } from "../../plugins/rotations/hadamard.ts";
import { planIdentity } from "../../plugins/rotations/identity.ts";
import { planOutlier } from "../../plugins/rotations/outlier_aware.ts";
import { tlqQuantizer } from "../../plugins/quantizers/tlq.ts";
import type { HostMatrix } from "../../plugins/types.ts";
import { type LayerStats, statsFromRows } from "./calibrate.ts";
import { centredStats } from "./centred_stats.ts";
import { actFakeQuant, layerErrors, rotationErrors } from "./rotation_error.ts";

const [S, K, N] = [32, 128, 16];
const A4 = { bits: 4, group: 16, asym: true };

/** Rows with a large per-channel offset, and the stats holding them centred per sample. */
function offsetLayer(): { s: LayerStats; x: Float32Array; xq: Float32Array; w: HostMatrix } {
  const x = salientRows(S, K, 5, [3, 60], 20).map((v, i) => v + 8 * Math.sin(i % K));
  const mean = new Float64Array(K);
  x.forEach((v, i) => mean[i % K] += v / S);
  const xq = x.map((v, i) => v - mean[i % K]);
  const s = { ...statsFromRows("blocks.0.ff", x, S, K), quantSample: xq };
  return { s, x, xq, w: randomWeight(N, K, 6) };
}

/** ‖A·Wᵀ‖_F for A [S, K]. */
function projected(a: ArrayLike<number>, w: HostMatrix): number {
  let t = 0;
  for (let r = 0; r < S; r++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += a[r * K + k] * w.data[n * K + k];
      t += acc * acc;
    }
  }
  return Math.sqrt(t);
}

Deno.test("rotation errors: the activation error is of the quantizer's rows, relative to the layer's", () => {
  const { s, x, xq, w } = offsetLayer();
  const q = actFakeQuant(xq, S, K, A4);
  const want = projected(q.map((v, i) => v - xq[i]), w) / projected(x, w);
  const id = planIdentity({ name: s.name, weight: w, stats: s, options: { rotation: "none" } });
  const [layer] = layerErrors([id], s, w, A4, (m) => m.data);
  assertClose([layer, rotationErrors(id, s, w, A4).after], [want, want], { rtol: 1e-6 });
  // Measured on the raw rows instead (no quantSample), the offset's error is counted.
  const { quantSample: _, ...raw } = s;
  const [rawErr] = layerErrors([id], raw, w, A4, (m) => m.data);
  assert(rawErr > 1.5 * layer, `raw rows ${rawErr} vs the quantizer's ${layer}`);
});

Deno.test("rotation errors: centring the statistics (a shift) leaves the measure unchanged", () => {
  const { s, w } = offsetLayer();
  const c = centredStats(s);
  assert(c.shift !== undefined && c.sample[0] !== s.sample[0], "the sample is shifted");
  const weightQuant = (m: HostMatrix) =>
    tlqQuantizer.dequantize(tlqQuantizer.calibrate(m, { bits: 4 }));
  const input = { name: s.name, weight: w, stats: c, options: { rotation: "adaptive" as const } };
  const plans = [planHadamard(input), planOutlier(input), planIdentity(input)];
  // The layer's rows are sample + shift: the same errors from either statistics.
  assertClose(
    layerErrors(plans, c, w, A4, weightQuant),
    layerErrors(plans, s, w, A4, weightQuant),
    { rtol: 1e-5 },
  );
  for (const p of plans) {
    const [a, b] = [rotationErrors(p, c, w, A4), rotationErrors(p, s, w, A4)];
    assertClose([a.before, a.after], [b.before, b.after], { rtol: 1e-5, msg: p.kind });
  }
});
