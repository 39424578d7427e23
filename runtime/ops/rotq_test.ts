import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  composeOutlierQ,
  quantizeRows,
  randomOrthogonal,
  rotateHadamardRef,
  rotateOutlierRef,
  unpackCodes,
} from "../reference/rotq.ts";
import {
  detectFmaContraction,
  type HadamardKernelOptions,
  rotateHadamard,
  rotateOutlier,
  rotqHadamard,
  rotqOutlier,
  uploadOutlierTransform,
} from "./rotq.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import { actQuantRef } from "../reference/act_quant.ts";
import { hadamardRegShape } from "./rotq_hadamard_reg.ts";

/** Activations with a few salient channels (×40) and a zero row. */
function activations(M: number, K: number, seed: number, f16 = false): Float32Array {
  const g = new Prng(seed);
  const x = g.normals(M * K);
  for (let r = 0; r < M; r++) {
    for (const c of [3, K >> 1, K - 2]) x[r * K + c] *= 40;
  }
  x.fill(0, 2 * K, 3 * K);
  return f16 ? Float32Array.from(Float16Array.from(x)) : x;
}

/** Signs / √block times smoothing factors in [0.5, 2). */
function preMultiplier(K: number, block: number, seed: number): Float32Array {
  const g = new Prng(seed);
  return Float32Array.from(
    { length: K },
    () => (g.uniform() < 0.5 ? -1 : 1) / Math.sqrt(block) / (0.5 + 1.5 * g.uniform()),
  );
}

async function readQuant(rt: Runtime, q: QuantizedActivations, M: number, K: number) {
  const words = (await readTensorRaw(rt, q.q)) as Uint32Array;
  return {
    codes: unpackCodes(words.subarray(0, M * Math.ceil(K / 4)), M, K),
    words: words.subarray(0, M * Math.ceil(K / 4)),
    scales: await readTensor(rt, q.scales),
  };
}

/** Codes equal; scales equal to the last bit (the kernels' f32 ops are the reference's). */
function assertQuantEqual(
  got: { codes: Int8Array; words: Uint32Array; scales: Float32Array },
  ref: { codes: Int8Array; packed: Uint32Array; scales: Float32Array },
  what: string,
): void {
  for (let i = 0; i < ref.codes.length; i++) {
    if (got.codes[i] !== ref.codes[i]) {
      throw new Error(`${what}: code ${i} is ${got.codes[i]}, reference ${ref.codes[i]}`);
    }
  }
  assertEquals(Array.from(got.words), Array.from(ref.packed), `${what} packed words`);
  for (let r = 0; r < ref.scales.length; r++) {
    const tol = 2 ** -22 * Math.abs(ref.scales[r]);
    assert(
      Math.abs(got.scales[r] - ref.scales[r]) <= tol,
      `${what}: scale ${r} is ${got.scales[r]}, reference ${ref.scales[r]}`,
    );
  }
}

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
        [9, 96, 32, 4, 32, true], // on CPU adapters these two run the CPU kernel, on GPUs the other
        [5, 320, 64, 8, 64, true, 128],
        [3, 384, 128, 6, 16, false, 256],
      ];
      for (const [M, K, block, bits, group, asym, chunk] of cases) {
        const x = activations(M, K, M + K + 1);
        const s = preMultiplier(K, block, K + 1);
        const xt = uploadTensor(rt, x, [M, K]);
        const ref = actQuantRef(rotateHadamardRef(x, M, K, s, block), M, K, bits, group, asym);
        // The adapter's kernel, and the register kernel forced (three rows a workgroup) and the
        // workgroup kernel on whole rows (chunked rows take it anyway).
        const kernels: HadamardKernelOptions[] = chunk
          ? [{}]
          : [{}, { kernel: "registers", rows: 3 }, { kernel: "workgroup" }];
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

/**
 * Grouped codes, scales and zero points equal to actQuantRef's: exactly on CPU adapters. A
 * GPU may round Δ = range/levels up to 2.5 ulp off (WGSL's division), so there Δ and the zero
 * point may be a few ulps off and a code one step off where x·(1/Δ) sits at a rounding tie.
 */
function assertGroupedEqual(
  rt: Runtime,
  got: { codes: Int8Array; scales: Float32Array },
  ref: ReturnType<typeof actQuantRef>,
  bits: number,
  what: string,
): void {
  const want = ref.zeros ? [...ref.scales, ...ref.zeros] : Array.from(ref.scales);
  if (rt.info.fallback) {
    for (let i = 0; i < ref.codes.length; i++) {
      assert(
        got.codes[i] === ref.codes[i],
        `${what}: code ${i} ${got.codes[i]} vs ${ref.codes[i]}`,
      );
    }
    assertEquals(Array.from(got.scales), want, `${what}: scales`);
    return;
  }
  for (let i = 0; i < ref.codes.length; i++) {
    if (got.codes[i] === ref.codes[i]) continue;
    const tie = Math.abs(Math.abs(ref.scaled[i] % 1) - 0.5) < 1e-4;
    assert(tie && Math.abs(got.codes[i] - ref.codes[i]) === 1, `${what}: code ${i}`);
  }
  const G = ref.scales.length;
  for (let i = 0; i < want.length; i++) {
    const d = ref.scales[i % G];
    const mag = i < G ? d : Math.abs(want[i]) + 2 ** bits * d; // z = lo + 2^(b−1)·Δ
    assert(Math.abs(got.scales[i] - want[i]) <= 8 * 2 ** -24 * mag, `${what}: scale ${i}`);
  }
}

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
      // fused kernel's 12), one 128 block (the bundled model's layers).
      const cases = [[7, 96, 32, 8, 0], [1, 64, 16, 4, 0], [6, 416, 32, 8, 0], [9, 128, 128, 8, 1]];
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
      // [M, K, bits, f16]: the bundled model's 128 (tokens not a multiple of 4), one token, f16.
      for (const [M, K, bits, half] of [[9, 128, 8, 0], [1, 64, 4, 0], [6, 32, 8, 1]]) {
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
