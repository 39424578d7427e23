import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { actStatsRef, rmsOf } from "../reference/act_stats.ts";
import { actStats, ActStatsAccumulator, actStatsSelfCheck } from "./act_stats.ts";

Deno.test(
  "act stats fold many calls exactly (min/max/absmax) and Σx² to 1e-5",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const K = 77; // not a multiple of the 32 channels of a workgroup
      const g = new Prng(5);
      const acc = new ActStatsAccumulator(rt, K);
      let ref = undefined;
      const rec = new Recorder(rt);
      for (const M of [1, 300, 9]) {
        const x = g.normals(M * K).map((v, i) => v * (1 + (i % K)) - 0.5);
        acc.record(rec, uploadTensor(rt, x, [M, K]));
        ref = actStatsRef(x, M, K, ref);
      }
      await rec.submit();
      const got = await acc.read(rt);
      assertEquals(got.rows, 310);
      assertEquals(Array.from(got.absmax), Array.from(ref!.absmax));
      assertEquals(Array.from(got.min), Array.from(ref!.min));
      assertEquals(Array.from(got.max), Array.from(ref!.max));
      assertClose(got.sumsq, ref!.sumsq, { rtol: 1e-5, atol: 0 });
      assert(Math.abs(rmsOf(got) / rmsOf(ref!) - 1) < 1e-5, "J");
    });
  },
);

Deno.test("act stats read f16 activations", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, K] = [33, 40];
    const x = Float32Array.from(Float16Array.from(new Prng(2).normals(M * K)));
    const acc = new ActStatsAccumulator(rt, K);
    const rec = new Recorder(rt);
    acc.record(rec, uploadTensor(rt, x, [M, K], "f16"));
    await rec.submit();
    const got = await acc.read(rt);
    const ref = actStatsRef(x, M, K);
    assertEquals(Array.from(got.absmax), Array.from(ref.absmax));
    assertClose(got.sumsq, ref.sumsq, { rtol: 1e-5, atol: 0 });
  });
});

Deno.test("act stats check shapes; the self-check passes", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const acc = new ActStatsAccumulator(rt, 8);
    const rec = new Recorder(rt);
    assertThrows(
      () => actStats(rec, uploadTensor(rt, new Float32Array(9), [9]), acc.buffer),
      RangeError,
      "[5, 9]",
    );
    assertThrows(() => new ActStatsAccumulator(rt, 0), RangeError, "cols");
    const empty = await acc.read(rt);
    assertEquals(empty.rows, 0);
    assertEquals(empty.min[0], Infinity);
    for (const r of await actStatsSelfCheck(rt)) assert(r.ok, `${r.name}: ${r.maxError}`);
  });
});
