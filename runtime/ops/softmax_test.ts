import { assert, assertClose, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { softmaxRef } from "../reference/softmax.ts";
import { softmax } from "./softmax.ts";

Deno.test(
  "softmax matches the reference at odd row lengths, one row, wide rows",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const g = new Prng(8);
      for (const [M, N] of [[13, 77], [1, 1], [1, 5], [3, 4608]]) {
        // Large logits (±40) check the max subtraction.
        const xs = g.normals(M * N).map((v) => v * 10);
        const x = uploadTensor(rt, xs, [M, N]);
        const got = await runAndRead(rt, (r) => softmax(r, x));
        const ref = softmaxRef(xs, N);
        // f32: 1e-5·RMS plus 1e-5 relative (exp of f32 inputs).
        assertClose(got, ref, { atol: 1e-5 * rms(ref), rtol: 1e-5, msg: `${M}×${N}` });
        for (let r = 0; r < M; r++) {
          let s = 0;
          for (let i = 0; i < N; i++) s += got[r * N + i];
          assert(Math.abs(s - 1) < 1e-5, `row ${r} of ${M}×${N} sums to ${s}`);
        }
      }
    });
  },
);

Deno.test("softmax f16 storage", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const xs = Float32Array.from(Float16Array.from(new Prng(9).normals(6 * 300).map((v) => v * 3)));
    const x = uploadTensor(rt, xs, [2, 3, 300], "f16");
    const got = await runAndRead(rt, (r) => softmax(r, x));
    const ref = softmaxRef(xs, 300);
    assertClose(got, ref, { atol: 1e-2 * rms(ref), rtol: 0 });
  });
});

Deno.test("softmax rejects in-place output and non-float input", gpuTest, async () => {
  await withRuntime((rt) => {
    const x = uploadTensor(rt, new Float32Array(6), [2, 3]);
    const i = uploadTensor(rt, new Int32Array(6), [2, 3], "i32");
    const rec = new Recorder(rt);
    assertThrows(() => softmax(rec, x, { out: x }), RangeError, "share");
    assertThrows(() => softmax(rec, i), TypeError, "f32 or f16");
  });
});
