import { assertClose, assertEquals } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Prng } from "../io/prng.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { cast } from "./cast.ts";

Deno.test("cast f32 → f16 → f32 rounds to nearest f16", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const xs = new Prng(3).normals(1001).map((v) => v * 100);
    const x = uploadTensor(rt, xs, [1001]);
    const back = await runAndRead(rt, (r) => cast(r, cast(r, x, "f16"), "f32"));
    assertClose(back, Float32Array.from(new Float16Array(xs)), { atol: 0, rtol: 0 });
    assertEquals(back.length, 1001);
  });
});
