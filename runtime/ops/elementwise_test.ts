import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Prng } from "../io/prng.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { cfgRows, gatherRows, geluTanh, map, silu } from "../reference/elementwise.ts";
import { elementwise } from "./elementwise.ts";
import { Recorder } from "../gpu/kernel.ts";

Deno.test("elementwise ops match the CPU reference at an odd size (f32)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const n = 7 * 431; // odd, and a multiple of the broadcast row
    const g = new Prng(1);
    const xs = g.normals(n).map((v) => v * 3);
    const ys = g.normals(n);
    const x = uploadTensor(rt, xs, [n]);
    const y = uploadTensor(rt, ys, [n]);
    const row = uploadTensor(rt, ys.subarray(0, 7), [7]);
    const tol = { atol: 1e-5, rtol: 1e-5 };
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "axpby", x, { y, alpha: 0.5, beta: -2 })),
      map(xs, (v, i) => 0.5 * v - 2 * ys[i]),
      tol,
    );
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "mul", x, { y })),
      map(xs, (v, i) => v * ys[i]),
      tol,
    );
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "affine", x, { alpha: 2, beta: 1 })),
      map(xs, (v) => 2 * v + 1),
      tol,
    );
    assertClose(await runAndRead(rt, (r) => elementwise(r, "silu", x)), map(xs, silu), tol);
    assertClose(await runAndRead(rt, (r) => elementwise(r, "gelu", x)), map(xs, geluTanh), tol);
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "addRow", x, { y: row })),
      map(xs, (v, i) => v + ys[i % 7]),
      tol,
    );
  });
});

Deno.test("elementwise f16 matches within f16 rounding", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const n = 513;
    const xs = new Prng(2).normals(n);
    const x = uploadTensor(rt, xs, [n], "f16");
    assertClose(await runAndRead(rt, (r) => elementwise(r, "silu", x)), map(xs, silu), {
      atol: 2e-3,
      rtol: 2e-3,
    });
  });
});

Deno.test("elementwise rejects mismatched operands and in-place output", gpuTest, async () => {
  await withRuntime((rt) => {
    const x = uploadTensor(rt, new Float32Array(8), [8]);
    const y = uploadTensor(rt, new Float32Array(4), [4]);
    const rec = new Recorder(rt);
    assertThrows(() => elementwise(rec, "mul", x, { y }), RangeError, "4");
    assertThrows(() => elementwise(rec, "axpby", x), TypeError, "needs y");
    assertThrows(() => elementwise(rec, "silu", x, { out: x }), RangeError, "share");
  });
});

Deno.test("elementwise clamp, cfg and gatherRows match the CPU reference", gpuTest, async () => {
  await withRuntime(async (rt) => {
    // Two batch halves of 3 rows each; rows of 37 elements of which 17 are kept.
    const rows = 3, width = 17, stride = 37;
    const xs = new Prng(3).normals(2 * rows * stride).map((v) => 2 * v);
    const x = uploadTensor(rt, xs, [xs.length]);
    const tol = { atol: 1e-5, rtol: 1e-5 };
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "clamp", x, { alpha: -1, beta: 0.5 })),
      map(xs, (v) => Math.min(Math.max(v, -1), 0.5)),
      tol,
    );
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "cfg", x, { alpha: 4.5, width, stride })),
      cfgRows(xs, width, stride, 4.5),
      tol,
    );
    assertClose(
      await runAndRead(rt, (r) => elementwise(r, "gatherRows", x, { width, stride })),
      gatherRows(xs, width, stride),
      { atol: 0, rtol: 0 },
    );
    const rec = new Recorder(rt);
    assertThrows(() => elementwise(rec, "cfg", x, { width: 5, stride: 4 }), RangeError, "stride");
    assertThrows(() => elementwise(rec, "cfg", x, { width: 5, stride: 9 }), RangeError, "multiple");
    assertThrows(() => elementwise(rec, "clamp", x), TypeError, "needs alpha");
  });
});

Deno.test(
  "elementwise clamp to ±65504 turns f16 infinities into the largest f16",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.f16) return;
      const xs = new Float32Array([Infinity, -Infinity, 70000, 65504, -3.5, 0]);
      const x = uploadTensor(rt, xs, [xs.length], "f16"); // 70000 is inf in f16
      const y = await runAndRead(
        rt,
        (r) => elementwise(r, "clamp", x, { alpha: -65504, beta: 65504 }),
      );
      assertEquals(Array.from(y), [65504, -65504, 65504, 65504, -3.5, 0]);
    });
  },
);

Deno.test(
  "elementwise subGroupRow: each group of rows less its own row of y",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [G, R, K] = [3, 4, 5];
      const xs = new Prng(21).normals(G * R * K);
      const ys = new Prng(22).normals(G * K);
      const x = uploadTensor(rt, xs, [G * R, K]);
      const y = uploadTensor(rt, ys, [G * K]); // flat: K comes from x
      const got = await runAndRead(
        rt,
        (r) => elementwise(r, "subGroupRow", x, { y, rowsPerGroup: R }),
      );
      const want = xs.map((v, i) => Math.fround(v - ys[Math.floor(i / (R * K)) * K + (i % K)]));
      assertEquals(Array.from(got), Array.from(want));
      const rec = new Recorder(rt);
      assertThrows(
        () => elementwise(rec, "subGroupRow", x, { y, rowsPerGroup: 5 }),
        RangeError,
        "rowsPerGroup 5 does not split",
      );
      assertThrows(
        () => elementwise(rec, "subGroupRow", x, { y, rowsPerGroup: 2 }),
        RangeError,
        "y must be [6, 5]",
      );
    });
  },
);
