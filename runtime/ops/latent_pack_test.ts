import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { packLatentsRef, unpackLatentsRef } from "../reference/latent_pack.ts";
import { packLatents, unpackLatents } from "./latent_pack.ts";

Deno.test("latent packing reference: pipeline_flux's view/permute order", () => {
  // [1, 2, 2, 4]: channel c, row y, column x holds 100c + 10y + x.
  const x = Float32Array.from({ length: 16 }, (_, i) => {
    const c = i >> 3, y = (i >> 2) & 1, xx = i & 3;
    return 100 * c + 10 * y + xx;
  });
  const p = packLatentsRef(x, [1, 2, 2, 4]);
  // Token 0 = cell (0, 0): channels (c, dy, dx) → 0, 1, 10, 11, 100, 101, 110, 111.
  assertEquals(Array.from(p.subarray(0, 8)), [0, 1, 10, 11, 100, 101, 110, 111]);
  assertEquals(Array.from(p.subarray(8)), [2, 3, 12, 13, 102, 103, 112, 113]);
  assertEquals(Array.from(unpackLatentsRef(p, [1, 2, 2, 4])), Array.from(x));
});

Deno.test("packLatents / unpackLatents match the references", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const g = new Prng(8);
    for (const dtype of ["f32", "f16"] as const) {
      if (dtype === "f16" && !rt.info.f16) continue;
      for (const shape of [[2, 4, 6, 10], [1, 16, 2, 2], [3, 1, 4, 2]]) {
        const [B, C, H, W] = shape;
        const xs = Float32Array.from(Float16Array.from(g.normals(B * C * H * W)));
        const packed = await runAndRead(
          rt,
          (r) => packLatents(r, uploadTensor(rt, xs, shape, dtype)),
        );
        assertEquals(Array.from(packed), Array.from(packLatentsRef(xs, shape)), `pack ${shape}`);
        const ps = packLatentsRef(xs, shape);
        const back = await runAndRead(
          rt,
          (r) =>
            unpackLatents(r, uploadTensor(rt, ps, [B, (H / 2) * (W / 2), 4 * C], dtype), {
              height: H,
              width: W,
              channels: C,
            }),
        );
        assertEquals(Array.from(back), Array.from(xs), `unpack ${shape}`);
      }
    }
  });
});

Deno.test("latent packing rejects bad shapes", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const x = uploadTensor(rt, new Float32Array(2 * 3 * 5), [1, 2, 3, 5]);
    const y = uploadTensor(rt, new Float32Array(24), [1, 2, 12]);
    await runAndRead(rt, (r) => {
      assertThrows(() => packLatents(r, x), RangeError, "even");
      assertThrows(
        () => unpackLatents(r, y, { height: 3, width: 4, channels: 3 }),
        RangeError,
        "even",
      );
      assertThrows(
        () => unpackLatents(r, y, { height: 2, width: 4, channels: 2 }),
        RangeError,
        "is not",
      );
      return unpackLatents(r, y, { height: 2, width: 4, channels: 3 });
    });
  });
});
