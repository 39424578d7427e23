import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  composeOutlierQ,
  quantizeRows,
  randomOrthogonal,
  rotateOutlierRef,
} from "../reference/rotq.ts";
import {
  detectFmaContraction,
  rotateOutlier,
  rotqHadamard,
  rotqOutlier,
  uploadOutlierTransform,
} from "./rotq.ts";
import { actQuantRef } from "../reference/act_quant.ts";
import {
  activations,
  assertGroupedEqual,
  assertQuantEqual,
  preMultiplier,
  readQuant,
} from "./rotq_test_util.ts";

/** Outlier transform tensors for block B over K, with a stride permutation. */
function outlierCase(rt: Runtime, K: number, B: number, g: Prng) {
  const s = preMultiplier(K, 1, K + B);
  const q1 = randomOrthogonal(B, g);
  const q2 = randomOrthogonal(B, g);
  let step = 7;
  while (gcd(step, K) !== 1) step += 2;
  const perm = new Uint32Array(K).map((_, k) => (k * step + 3) % K);
  const params = { s, q1, q2, perm, block: B };
  return { t: uploadOutlierTransform(rt, params), params };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

Deno.test(
  "rotqOutlier matches the CPU reference exactly (codes), 1, 2 and 4 rows per group",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const fused = await detectFmaContraction(rt);
      const g = new Prng(11);
      // 640/64: more blocks (10) than one register tile (4); 64/16: every rows-per-group variant.
      for (const [M, K, B] of [[6, 64, 16], [5, 640, 64]]) {
        const x = activations(M, K, M * K);
        const { t, params } = outlierCase(rt, K, B, g);
        const xt = uploadTensor(rt, x, [M, K]);
        const v = rotateOutlierRef(x, M, K, params, fused);
        for (const rows of K === 64 ? [1, 2, 4] : [2]) {
          const rec = new Recorder(rt);
          const q = rotqOutlier(rec, xt, t, 8, rows);
          await rec.submit();
          assertQuantEqual(
            await readQuant(rt, q, M, K),
            quantizeRows(v, M, K, 8),
            `outlier ${M}×${K}/${B} rows ${rows}`,
          );
        }
        if (K === 64) continue; // one rotate-only pipeline is enough
        const rec = new Recorder(rt);
        const y = rotateOutlier(rec, xt, t);
        await rec.submit();
        assertEquals(
          Array.from(await readTensor(rt, y)),
          Array.from(v),
          `outlier rotated ${M}×${K}`,
        );
      }
    });
  },
);

Deno.test("rotq kernels validate their arguments", gpuTest, async () => {
  await withRuntime((rt) => {
    const x = uploadTensor(rt, new Float32Array(24), [2, 12]);
    const s = uploadTensor(rt, new Float32Array(12), [12]);
    const rec = new Recorder(rt);
    assertThrows(() => rotqHadamard(rec, x, { s, block: 8 }), RangeError, "block");
    assertThrows(() => rotqHadamard(rec, x, { s, block: 4 }, 9), RangeError, "bits");
    const s2 = uploadTensor(rt, new Float32Array(8), [8]);
    assertThrows(() => rotqHadamard(rec, x, { s: s2, block: 4 }), RangeError, "s must be");
    const q = uploadTensor(rt, new Float32Array(9), [3, 3]);
    const dest = uploadTensor(rt, new Uint32Array(12), [12], "u32");
    assertThrows(
      () => rotqOutlier(rec, x, { s, q1: q, q2: q, dest, block: 4 }),
      RangeError,
      "q1 and q2",
    );
    assertThrows(
      () => rotqOutlier(rec, x, { s, q1: q, q2: q, dest, block: 2 }),
      RangeError,
      "at least 4",
    );
    const q4 = uploadTensor(rt, new Float32Array(16), [4, 4]);
    const t = { s, q1: q4, q2: q4, dest, block: 4 };
    assertThrows(() => rotqOutlier(rec, x, t, 4, { group: 8 }), RangeError, "divides K = 12");
    assertThrows(() => rotqOutlier(rec, x, t, 4, { asym: true }), RangeError, "asym needs a group");
  });
});

Deno.test(
  "rotqOutlier tiled kernel matches the CPU reference exactly (codes, rotated values)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const fused = await detectFmaContraction(rt);
      const g = new Prng(21);
      // [M, K, B, ty, bk, bits, rotate too]: tokens not a multiple of the tile (BM = 8·ty),
      // one token, several tiles, 20 blocks; ty 0 = the GPU's default tile (B 128: 256
      // invocations, 2 vec4 loads per slice); B 64 ty 8 bk 4: 1 load per slice. Few distinct
      // tiles: each is ~2 s of shader compiling per pipeline on lavapipe.
      const cases = [
        [37, 96, 32, 4, 8, 8, 1],
        [1, 96, 32, 4, 8, 8, 1],
        [5, 640, 32, 4, 8, 4, 1],
        [11, 128, 64, 8, 4, 8, 0],
        [3, 256, 128, 0, 0, 8, 0],
      ];
      for (const [M, K, B, ty, bk, bits, rotate] of cases) {
        const x = activations(M, K, M * K + 1);
        const { t, params } = outlierCase(rt, K, B, g);
        const xt = uploadTensor(rt, x, [M, K]);
        const opts = ty ? { kernel: "tiled" as const, ty, bk } : { kernel: "tiled" as const };
        const rec = new Recorder(rt);
        const q = rotqOutlier(rec, xt, t, bits, opts);
        const y = rotate ? rotateOutlier(rec, xt, t, opts) : undefined;
        await rec.submit();
        const v = rotateOutlierRef(x, M, K, params, fused);
        const what = `tiled ${M}×${K}/${B} ty ${ty} bk ${bk} A${bits}`;
        if (y) assertEquals(Array.from(await readTensor(rt, y)), Array.from(v), `${what} rotated`);
        assertQuantEqual(await readQuant(rt, q, M, K), quantizeRows(v, M, K, bits), what);
        if (M > 2) assertEquals((await readTensor(rt, q.scales))[2], 0, "the zero row");
      }
    });
  },
);

Deno.test(
  "rotqOutlier fused kernel matches the CPU reference exactly (codes, scales)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const fused = await detectFmaContraction(rt);
      const g = new Prng(23);
      // [M, K, B, tokens, bits, f16]: tokens not a multiple of the workgroup's, one token,
      // the most blocks (12), one block, A4/A6, f16 activations; tokens 0 = the default.
      const cases = [
        [37, 96, 32, 4, 8, 0],
        [1, 96, 32, 8, 8, 0],
        [5, 384, 32, 2, 4, 0],
        [11, 64, 64, 0, 6, 0],
        [9, 192, 32, 4, 8, 1],
      ];
      for (const [M, K, B, tokens, bits, half] of cases) {
        if (half && !rt.info.f16) continue;
        const x = activations(M, K, M * K + 3, !!half);
        const { t, params } = outlierCase(rt, K, B, g);
        const xt = uploadTensor(rt, x, [M, K], half ? "f16" : "f32");
        const opts = tokens ? { kernel: "fused" as const, tokens } : { kernel: "fused" as const };
        const rec = new Recorder(rt);
        const q = rotqOutlier(rec, xt, t, bits, opts);
        await rec.submit();
        const v = rotateOutlierRef(x, M, K, params, fused);
        const what = `fused ${M}×${K}/${B} tokens ${tokens} A${bits}${half ? " f16" : ""}`;
        assertQuantEqual(await readQuant(rt, q, M, K), quantizeRows(v, M, K, bits), what);
        if (M > 2) assertEquals((await readTensor(rt, q.scales))[2], 0, "the zero row");
      }
    });
  },
);

Deno.test(
  "rotqOutlier with a scale per group: actQuant's codes of the rotated rows, fused or not",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const fused = await detectFmaContraction(rt);
      const g = new Prng(29);
      // [M, K, B, bits, group, asym, kernel]: the fused kernel (tokens past M, several groups
      // a thread, one group a block), and the row and CPU kernels' rotation then actQuant.
      const cases: [number, number, number, number, number, boolean, Kernel][] = [
        [7, 384, 32, 4, 16, true, "fused"],
        [5, 96, 32, 8, 32, false, "fused"],
        [3, 128, 32, 4, 32, true, "fused"],
        [9, 128, 128, 4, 16, true, "fused"], // one block, fewer groups than threads a token
        [6, 512, 128, 4, 16, true, "fused"],
        [5, 96, 32, 4, 16, true, "rows"],
        [7, 384, 32, 4, 16, true, "cpu"],
      ];
      for (const [M, K, B, bits, group, asym, kernel] of cases) {
        const x = activations(M, K, M * K + 5);
        const { t, params } = outlierCase(rt, K, B, g);
        const rec = new Recorder(rt);
        const opts = { kernel, tokens: kernel === "fused" ? 4 : undefined, group, asym };
        const q = rotqOutlier(rec, uploadTensor(rt, x, [M, K]), t, bits, opts);
        await rec.submit();
        const what = `${kernel} ${M}×${K}/${B} A${bits} groups of ${group}${asym ? " asym" : ""}`;
        assertEquals([q.group, q.asym ?? false], [group, asym], what);
        const v = rotateOutlierRef(x, M, K, params, fused);
        assertGroupedEqual(
          rt,
          await readQuant(rt, q, M, K),
          actQuantRef(v, M, K, bits, group, asym),
          bits,
          what,
        );
      }
    });
  },
);

type Kernel = "fused" | "rows" | "cpu";

Deno.test(
  "rotqOutlier CPU kernels match the CPU reference exactly (codes, rotated values, f16 rows)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const fused = await detectFmaContraction(rt);
      const g = new Prng(31);
      // [M, K, B, bits, f16]: tokens not a multiple of 4, one token, 13 blocks (past the
      // fused kernel's 12), one 128 block (the bundled model's layers), 8 rows a lane with
      // the last workgroup's clamped, a block whose Q is past a uniform binding (storage).
      const cases = [
        [7, 96, 32, 8, 0],
        [1, 64, 16, 4, 0],
        [6, 416, 32, 8, 0],
        [9, 128, 128, 8, 1],
        [600, 64, 16, 8, 0],
        [5, 512, 256, 8, 0],
      ];
      for (const [M, K, B, bits, half] of cases) {
        if (half && !rt.info.f16) continue;
        const x = activations(M, K, M * K + 3, !!half);
        const { t, params } = outlierCase(rt, K, B, g);
        const xt = uploadTensor(rt, x, [M, K], half ? "f16" : "f32");
        const rec = new Recorder(rt);
        const q = rotqOutlier(rec, xt, t, bits, { kernel: "cpu" });
        const y = rotateOutlier(rec, xt, t, { kernel: "cpu" });
        await rec.submit();
        const v = rotateOutlierRef(x, M, K, params, fused);
        const what = `cpu ${M}×${K}/${B} A${bits}${half ? " f16" : ""}`;
        assertQuantEqual(await readQuant(rt, q, M, K), quantizeRows(v, M, K, bits), what);
        const want = half ? Float32Array.from(Float16Array.from(v)) : v;
        assertEquals(Array.from(await readTensor(rt, y)), Array.from(want), `${what} rotated`);
      }
    });
  },
);

Deno.test(
  "rotqOutlier CPU kernel with Q1·P·Q2 composed (one block) matches its reference exactly",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const fused = await detectFmaContraction(rt);
      const g = new Prng(37);
      // [M, K, bits, f16]: the bundled model's 128 (tokens not a multiple of 4), one token, f16,
      // 4 rows a lane.
      const cases = [[9, 128, 8, 0], [1, 64, 4, 0], [6, 32, 8, 1], [200, 128, 8, 0]];
      for (const [M, K, bits, half] of cases) {
        if (half && !rt.info.f16) continue;
        const x = activations(M, K, M * K + 11, !!half);
        const { t, params } = outlierCase(rt, K, K, g);
        const c = composeOutlierQ(params);
        const tc = { ...t, composed: uploadTensor(rt, c, [K, K]) };
        const xt = uploadTensor(rt, x, [M, K], half ? "f16" : "f32");
        const rec = new Recorder(rt);
        const q = rotqOutlier(rec, xt, tc, bits, { kernel: "cpu" });
        const y = rotateOutlier(rec, xt, tc, { kernel: "cpu" });
        await rec.submit();
        const v = rotateOutlierRef(x, M, K, params, fused, c);
        const what = `cpu composed ${M}×${K} A${bits}${half ? " f16" : ""}`;
        assertQuantEqual(await readQuant(rt, q, M, K), quantizeRows(v, M, K, bits), what);
        const want = half ? Float32Array.from(Float16Array.from(v)) : v;
        assertEquals(Array.from(await readTensor(rt, y)), Array.from(want), `${what} rotated`);
        // The same map as the two products, up to f32 rounding.
        assertClose(v, rotateOutlierRef(x, M, K, params, fused), { atol: 1e-5, rtol: 1e-5 });
      }
      // composed must be [K, K] of a one-block transform.
      const { t } = outlierCase(rt, 64, 32, g);
      const bad = { ...t, composed: uploadTensor(rt, new Float32Array(64 * 64), [64, 64]) };
      assertThrows(
        () => rotateOutlier(new Recorder(rt), uploadTensor(rt, new Float32Array(64), [1, 64]), bad),
        RangeError,
        "composed",
      );
    });
  },
);

Deno.test("rotqOutlier fused kernel rejects what it cannot run", gpuTest, async () => {
  await withRuntime((rt) => {
    const { t } = outlierCase(rt, 416, 32, new Prng(2)); // 13 blocks
    const x = uploadTensor(rt, new Float32Array(832), [2, 416]);
    const rec = new Recorder(rt);
    assertThrows(
      () => rotqOutlier(rec, x, t, 8, { kernel: "fused" }),
      RangeError,
      "more than 12 blocks",
    );
    const small = outlierCase(rt, 64, 32, new Prng(3)).t;
    const x64 = uploadTensor(rt, new Float32Array(128), [2, 64]);
    assertThrows(() => rotqOutlier(rec, x64, small, 8, { tokens: 3 }), RangeError, "tokens 3");
    assertThrows(
      () => rotateOutlier(rec, x64, small, { kernel: "fused" }),
      RangeError,
      "only quantizes",
    );
  });
});

Deno.test("rotqOutlier tiled kernel reads f16 activations", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    const fused = await detectFmaContraction(rt);
    const [M, K, B] = [19, 192, 32];
    const x = activations(M, K, 8, true);
    const { t, params } = outlierCase(rt, K, B, new Prng(5));
    const xt = uploadTensor(rt, x, [M, K], "f16");
    const opts = { kernel: "tiled" as const, ty: 4, bk: 8 };
    const rec = new Recorder(rt);
    const q = rotqOutlier(rec, xt, t, 8, opts);
    const y = rotateOutlier(rec, xt, t, opts);
    await rec.submit();
    const v = rotateOutlierRef(x, M, K, params, fused);
    assertQuantEqual(await readQuant(rt, q, M, K), quantizeRows(v, M, K, 8), "tiled f16");
    assertEquals(
      Array.from(await readTensor(rt, y)),
      Array.from(Float32Array.from(Float16Array.from(v))),
      "tiled f16 rotated (rounded to f16)",
    );
  });
});

Deno.test("rotqOutlier tiled kernel rejects tiles that do not fit", gpuTest, async () => {
  await withRuntime((rt) => {
    const { t } = outlierCase(rt, 64, 32, new Prng(1));
    const x = uploadTensor(rt, new Float32Array(128), [2, 64]);
    const rec = new Recorder(rt);
    assertThrows(() => rotqOutlier(rec, x, t, 8, { ty: 4, bk: 12 }), RangeError, "bk 12");
    assertThrows(() => rotqOutlier(rec, x, t, 8, { ty: 1, bk: 8 }), RangeError, "whole numbers");
    assertThrows(
      () => rotqOutlier(rec, x, t, 8, { kernel: "gpu" as "tiled" }),
      RangeError,
      "opts.kernel",
    );
  });
});
