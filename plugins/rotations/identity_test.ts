import { assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { loadLayerRotation } from "../../runtime/quant/rotation.ts";
import { quantizeRows } from "../../runtime/reference/rotq.ts";
import { identityRotationPlugin, planIdentity } from "./identity.ts";
import { assertGpuMatches, randomWeight, salientRows } from "./test_util.ts";

Deno.test(
  "none: T = I, the weight is unchanged, the GPU path is plain per-token quantization",
  gpuTest,
  async () => {
    const [M, K] = [9, 100];
    const x = salientRows(M, K, 1, [3]);
    const w = randomWeight(6, K, 2);
    const p = planIdentity({ name: "l", weight: w, options: { rotation: "none" } });
    assertEquals(p.kind, "none");
    assertEquals(p.block, 1);
    assertEquals(Array.from(p.transformWeight(w).data), Array.from(w.data));
    assertEquals(Array.from(p.transformActivations(x, M)), Array.from(x));
    assertEquals(p.quantizeActivations(x, M, 6).codes, quantizeRows(x, M, K, 6).codes);
    await withRuntime(async (rt) => {
      await assertGpuMatches(rt, p, x, M, w, 8);
      await assertGpuMatches(rt, p, x, M, w, 4);
    });
    const back = loadLayerRotation("none", p.tensors(), K);
    assertEquals(back.kind, "none");
    assertEquals(identityRotationPlugin.name, "none");
    assertEquals(p.gpu.length, 1);
  },
);
