import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { actCentresRef } from "../reference/act_center.ts";
import { cfgDeltaRef } from "../reference/cfg_delta.ts";
import { actCentres, centerActivations } from "./act_center.ts";

/** x [G·R, K] with a per-group, per-channel offset larger than the spread. */
function offsetRows(G: number, R: number, K: number, seed: number): Float32Array {
  const g = new Prng(seed);
  const off = g.normals(G * K).map((v) => 4 * v);
  return g.normals(G * R * K).map((v, i) => v + off[Math.floor(i / (R * K)) * K + (i % K)]);
}

Deno.test("act centres: midrange exact, mean to 1e-6; centred = x − centre", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [G, R, K] = [3, 50, 77]; // K not a multiple of a workgroup's 32 channels
    const xs = offsetRows(G, R, K, 4);
    const x = uploadTensor(rt, xs, [G * R, K]);
    const mid = await runAndRead(rt, (r) => actCentres(r, x, R, "midrange"));
    assertEquals(Array.from(mid), Array.from(actCentresRef(xs, R, K, "midrange")));
    const mean = await runAndRead(rt, (r) => actCentres(r, x, R, "mean"));
    assertClose(mean, actCentresRef(xs, R, K, "mean"), { atol: 1e-6, rtol: 1e-6 });
    const centred = await runAndRead(rt, (r) => {
      const c = centerActivations(r, x, R, "midrange");
      c.centres.release();
      return c.centred;
    });
    const ref = xs.map((v, i) => Math.fround(v - mid[Math.floor(i / (R * K)) * K + (i % K)]));
    assertEquals(Array.from(centred), Array.from(ref));
    // One group: the whole batch's centre.
    const all = await runAndRead(rt, (r) => actCentres(r, x, G * R, "midrange"));
    assertEquals(Array.from(all), Array.from(actCentresRef(xs, G * R, K, "midrange")));
  });
});

Deno.test("act centres over many chunks of rows (the last one short)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [G, R, K] = [2, 600, 40]; // 3 chunks of 256 rows a group
    const xs = offsetRows(G, R, K, 5);
    const x = uploadTensor(rt, xs, [G * R, K]);
    const mid = await runAndRead(rt, (r) => actCentres(r, x, R, "midrange"));
    assertEquals(Array.from(mid), Array.from(actCentresRef(xs, R, K, "midrange")));
    const mean = await runAndRead(rt, (r) => actCentres(r, x, R, "mean"));
    assertClose(mean, actCentresRef(xs, R, K, "mean"), { atol: 1e-5, rtol: 1e-5 });
  });
});

Deno.test("act centres read f16 activations", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [G, R, K] = [2, 9, 40];
    const xs = Float32Array.from(Float16Array.from(offsetRows(G, R, K, 6)));
    const x = uploadTensor(rt, xs, [G * R, K], "f16");
    const got = await runAndRead(rt, (r) => actCentres(r, x, R, "midrange"));
    const ref = Float32Array.from(Float16Array.from(actCentresRef(xs, R, K, "midrange")));
    assertEquals(Array.from(got), Array.from(ref));
  });
});

Deno.test("act centres reject groups that do not split the rows", gpuTest, async () => {
  await withRuntime((rt) => {
    const x = uploadTensor(rt, new Float32Array(10 * 4), [10, 4]);
    const rec = new Recorder(rt);
    assertThrows(() => actCentres(rec, x, 3, "mean"), RangeError, "groups of 3");
    assertThrows(() => actCentres(rec, x, 0, "mean"), RangeError, "groups of 0");
    x.release();
  });
});

Deno.test(
  "act centres of a CFG pair: fused, as the centring of [u; c − u] bit for bit",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [G, R, K] = [4, 300, 40]; // two samples a half, two chunks of rows each
      const xs = offsetRows(G, R, K, 7);
      const x = uploadTensor(rt, xs, [G * R, K]);
      const d = uploadTensor(rt, cfgDeltaRef(xs), [G * R, K]);
      for (const mode of ["mean", "midrange"] as const) {
        const read = (t: Tensor, pair: boolean) =>
          runAndRead(rt, (r) => {
            const c = centerActivations(r, t, R, mode, pair);
            c.centres.release();
            return c.centred;
          });
        assertEquals(Array.from(await read(x, true)), Array.from(await read(d, false)));
        const cs = await runAndRead(rt, (r) => actCentres(r, x, R, mode, true));
        assertEquals(
          Array.from(cs),
          Array.from(await runAndRead(rt, (r) => actCentres(r, d, R, mode))),
        );
      }
      const odd = uploadTensor(rt, new Float32Array(3 * R * K), [3 * R, K]);
      assertThrows(
        () => actCentres(new Recorder(rt, "t"), odd, R, "mean", true),
        RangeError,
        "3 groups are not a CFG pair",
      );
    });
  },
);
