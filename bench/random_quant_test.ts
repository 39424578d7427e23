import { assert, assertEquals } from "../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../tests/gpu.ts";
import { uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { statsFromRows } from "../runtime/quant/calibrate.ts";
import { gemmRef } from "../runtime/reference/gemm.ts";
import { planAdaptive } from "../plugins/rotations/adaptive.ts";
import { tlqQuantize } from "../plugins/quantizers/tlq.ts";
import { RandomSource } from "./random_model.ts";
import { compareOutputs, plannedLinears, quantizeLayers } from "./random_quant.ts";

const K = 64;
const N = 48;
const shapes = new Map<string, number[]>([
  ["a.weight", [N, K]],
  ["a.bias", [N]],
  ["b.weight", [N, K]],
  ["b.bias", [N]],
]);

/** Inputs of layer a: small (ARS → hadamard); of b: one large channel (→ outlier). */
function inputs() {
  const g = new Prng(1);
  const xa = g.normals(40 * K).map((v) => 0.3 * v);
  const xb = g.normals(40 * K).map((v, i) => (i % K === 5 ? 20 * v : v));
  return {
    xa,
    xb,
    stats: new Map([["a", statsFromRows("a", xa, 40, K)], ["b", statsFromRows("b", xb, 40, K)]]),
  };
}

Deno.test("quantizeLayers: the workers give what planAdaptive + TLQ give in-thread", async () => {
  const src = new RandomSource(shapes, 3, "rq");
  const { stats } = inputs();
  const plans = await quantizeLayers(src, ["a", "b"], stats, { wbits: 4, workers: 2 });
  for (const name of ["a", "b"]) {
    const w = { data: await src.readF32(`${name}.weight`), rows: N, cols: K };
    const r = planAdaptive({
      name,
      weight: w,
      stats: stats.get(name),
      options: { rotation: "adaptive" },
    });
    const q = tlqQuantize(r.transformWeight(w), { bits: 4 });
    const p = plans.get(name)!;
    assertEquals(p.rotation, r.kind);
    assertEquals(Array.from(p.q.codes), Array.from(q.codes));
    assertEquals(Array.from(p.q.params.lut), Array.from(q.params.lut));
    assert(p.sqnrDb > 10, `${name}: SQNR ${p.sqnrDb}`);
  }
  assertEquals([plans.get("a")!.rotation, plans.get("b")!.rotation], ["hadamard", "outlier"]);
});

Deno.test(
  "plannedLinears: W4A8 through the rotation ≈ X·Wᵀ + b; unplanned layers dense",
  gpuTest,
  async () => {
    const src = new RandomSource(shapes, 3, "rq");
    const { xa, xb, stats } = inputs();
    const plans = await quantizeLayers(src, ["a", "b"], stats, { wbits: 4, workers: 1 });
    await withRuntime(async (rt) => {
      const f = plannedLinears(new Map([["b", plans.get("b")!]]), { abits: 8 });
      for (const [name, x] of [["a", xa], ["b", xb]] as const) {
        const w = await src.readF32(`${name}.weight`);
        const bias = await src.readF32(`${name}.bias`);
        const l = await f.create(rt, { name, weight: w, bias, outFeatures: N, inFeatures: K });
        const xt = uploadTensor(rt, x, [40, K]);
        const y = await runAndRead(rt, (rec) => l.forward(rec, xt));
        const ref = gemmRef(x, w, 40, N, K, { bias });
        const c = compareOutputs(y, ref);
        if (name === "a") assert(c.relL2 < 1e-5, `dense layer a: ${c.relL2}`);
        else assert(c.relL2 < 0.2 && c.relL2 > 1e-4, `W4A8 layer b: rel L2 ${c.relL2}`);
        xt.release();
        l.release();
      }
    });
  },
);
