import { assert, assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { elementwise } from "../ops/elementwise.ts";
import { Recorder } from "./kernel.ts";
import { bucketSize, createTensor, readTensor, readTensors, uploadTensor } from "./tensor.ts";

Deno.test("bucketSize wastes at most 1/8 and keeps 256-byte multiples", () => {
  for (const n of [1, 255, 256, 1000, 4097, 1 << 20, (1 << 20) + 1, 123456789]) {
    const b = bucketSize(n);
    assert(b >= n && b % 256 === 0, `${n} → ${b}`);
    assert(b <= Math.max(256, n * 1.125 + 256), `${n} → ${b} wastes too much`);
  }
});

Deno.test("an upload never lands in a buffer an open recording released", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const x = uploadTensor(rt, new Float32Array(64).fill(1), [64]);
    const rec = new Recorder(rt);
    const tmp = elementwise(rec, "affine", x, { alpha: 2, beta: 0 }); // tmp = 2
    const y = elementwise(rec, "affine", tmp, { alpha: 3, beta: 0 }); // y = 6, reads tmp
    tmp.release(); // free for reuse inside this recording…
    // …but a queue write would land before the kernels above: it must get another buffer.
    const up = uploadTensor(rt, new Float32Array(64).fill(5), [64]);
    assert(up.buffer !== tmp.buffer, "upload reused a buffer the open recording still needs");
    await rec.submit();
    assertEquals([...await readTensor(rt, y)].every((v) => v === 6), true);
    assertEquals([...await readTensor(rt, up)].every((v) => v === 5), true);
    // Once submitted, the released buffer is fair game again.
    const again = createTensor(rt, [64], "f32", true);
    assert(again.buffer === tmp.buffer, "a buffer released before the submit should be reused");
  });
});

Deno.test("reshaped views share ownership: the buffer is released once", gpuTest, async () => {
  await withRuntime((rt) => {
    const t = createTensor(rt, [4, 4]);
    const v = t.reshape([16]);
    const live = rt.pool.liveBytes;
    v.release();
    assert(t.released && v.released);
    t.release();
    assertEquals(rt.pool.liveBytes, live - t.buffer.size);
  });
});

Deno.test(
  "readTensors reads f32 and f16 tensors of odd sizes in one map, in order",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const a = Float32Array.from({ length: 5 }, (_, i) => i + 0.25);
      const b = Float32Array.from({ length: 3 }, (_, i) => -i - 0.5); // 6 bytes: padded to 8
      const c = Float32Array.from({ length: 7 }, (_, i) => 100 * i);
      const ts = [
        uploadTensor(rt, a, [5]),
        uploadTensor(rt, b, [3], "f16"),
        uploadTensor(rt, c, [7]),
      ];
      const got = await readTensors(rt, ts);
      assertEquals(got.map((g) => Array.from(g)), [Array.from(a), Array.from(b), Array.from(c)]);
      for (const [i, t] of ts.entries()) assertEquals(got[i], await readTensor(rt, t));
      assertEquals(await readTensors(rt, []), []);
    });
  },
);
