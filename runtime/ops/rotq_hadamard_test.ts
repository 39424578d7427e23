import { assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { actQuantRef } from "../reference/act_quant.ts";
import { quantizeRows, rotateHadamardRef } from "../reference/rotq.ts";
import { type HadamardKernelOptions, rotateHadamard, rotqHadamard } from "./rotq_hadamard.ts";
import { hadamardRegShape } from "./rotq_hadamard_reg.ts";
import {
  activations,
  assertGroupedEqual,
  assertQuantEqual,
  preMultiplier,
  readQuant,
} from "./rotq_test_util.ts";

Deno.test(
  "rotqHadamard matches the CPU reference exactly (codes) at odd shapes, whole rows or in chunks",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Whole rows through both kernels (the CPU one takes blocks of 4 to 1024). The last two
      // go through in chunks (rows wider than workgroup memory): K = 5 blocks of 64 in chunks
      // of 2 blocks (the last chunk is one block), and K = 96 with a cap that is not a whole
      // number of blocks (rounded down to 32).
      const cases: [number, number, number, number, number?][] = [
        [37, 96, 32, 8],
        [5, 384, 128, 4],
        [1, 18, 2, 8],
        [3, 12, 4, 6],
        [3, 2048, 1024, 8],
        [3, 1536, 512, 8],
        [2, 64, 64, 8],
        [5, 48, 4, 8],
        [7, 320, 64, 8, 128],
        [4, 96, 32, 4, 40],
      ];
      for (const [M, K, block, bits, chunk] of cases) {
        const x = activations(M, K, M + K);
        const s = preMultiplier(K, block, K);
        const xt = uploadTensor(rt, x, [M, K]);
        const st = uploadTensor(rt, s, [K]);
        const kernels: HadamardKernelOptions[] = chunk ? [{ chunk }] : [{ kernel: "workgroup" }];
        // The CPU kernel runs on CPU adapters only; the register kernel where K/16 or K/32
        // threads take a row (one workgroup of every row, and one of two rows, the second past
        // M for odd M; and 32 values a thread): blocks past 16² take three exchanges.
        if (!chunk && block >= 4 && rt.info.fallback) kernels.push({ kernel: "cpu" });
        if (!chunk && typeof hadamardRegShape(rt, K) === "object") {
          kernels.push({ kernel: "registers" }, { kernel: "registers", rows: 2 });
        }
        if (!chunk && typeof hadamardRegShape(rt, K, 1, 32) === "object") {
          kernels.push({ kernel: "registers", values: 32 });
        }
        for (const opts of kernels) {
          const rec = new Recorder(rt);
          const q = rotqHadamard(rec, xt, { s: st, block }, bits, opts);
          const y = rotateHadamard(rec, xt, { s: st, block }, opts);
          await rec.submit();
          const what = `${M}×${K}/${block} A${bits} ${JSON.stringify(opts)}`;
          const v = rotateHadamardRef(x, M, K, s, block);
          assertEquals(Array.from(await readTensor(rt, y)), Array.from(v), `rotated ${what}`);
          const ref = quantizeRows(v, M, K, bits);
          assertQuantEqual(await readQuant(rt, q, M, K), ref, `hadamard ${what}`);
          if (M > 2) assertEquals(ref.scales[2], 0, "the zero row has scale 0");
        }
      }
    });
  },
);

Deno.test(
  "rotqHadamard with a scale per group (symmetric or not): actQuant's codes of the rotated rows",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // [M, K, block, bits, group, asym, chunk]: whole rows and chunked (z) rows.
      const cases: [number, number, number, number, number, boolean, number?][] = [
        [9, 96, 32, 4, 32, false],
        [9, 96, 32, 4, 32, true],
        [5, 320, 64, 8, 64, true, 128],
        [3, 384, 128, 6, 16, false, 256],
      ];
      for (const [M, K, block, bits, group, asym, chunk] of cases) {
        const x = activations(M, K, M + K + 1);
        const s = preMultiplier(K, block, K + 1);
        const xt = uploadTensor(rt, x, [M, K]);
        const ref = actQuantRef(rotateHadamardRef(x, M, K, s, block), M, K, bits, group, asym);
        // The adapter's kernel, and the register kernel forced (three rows a workgroup), the
        // workgroup kernel on whole rows (chunked rows take it anyway) and on CPU adapters the
        // CPU kernel (its rotation, then actQuant's groups).
        const kernels: HadamardKernelOptions[] = chunk
          ? [{}]
          : [{}, { kernel: "registers", rows: 3 }, { kernel: "workgroup" }];
        if (!chunk && rt.info.fallback) kernels.push({ kernel: "cpu" });
        for (const k of kernels) {
          const rec = new Recorder(rt);
          const q = rotqHadamard(rec, xt, { s: uploadTensor(rt, s, [K]), block }, bits, {
            group,
            asym,
            chunk,
            ...k,
          });
          await rec.submit();
          const what = `${M}×${K}/${block} A${bits} groups of ${group}${asym ? " asym" : ""} ` +
            JSON.stringify(k);
          assertEquals([q.group, q.asym ?? false], [group, asym], what);
          assertGroupedEqual(rt, await readQuant(rt, q, M, K), ref, bits, what);
        }
      }
    });
  },
);

Deno.test("rotqHadamard reads f16 activations", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const [M, K, block] = [9, 192, 64];
    const x = activations(M, K, 3, true);
    const s = preMultiplier(K, block, 4);
    const xt = uploadTensor(rt, x, [M, K], "f16");
    const t = { s: uploadTensor(rt, s, [K]), block };
    const v = rotateHadamardRef(x, M, K, s, block);
    const want = Array.from(Float32Array.from(Float16Array.from(v)));
    for (const kernel of ["workgroup", "registers"] as const) {
      const rec = new Recorder(rt);
      const q = rotqHadamard(rec, xt, t, 8, { kernel });
      const y = rotateHadamard(rec, xt, t, { kernel }); // f16 rows out
      await rec.submit();
      const what = `hadamard f16 ${kernel}`;
      assertQuantEqual(await readQuant(rt, q, M, K), quantizeRows(v, M, K, 8), what);
      assertEquals(Array.from(await readTensor(rt, y)), want, `${what} rotated`);
    }
  });
});
