import { assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import type { Runtime } from "../gpu/device.ts";
import { Recorder } from "../gpu/kernel.ts";
import { type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { type GemmActivation, gemmRef } from "../reference/gemm.ts";
import {
  defaultGemmVersion,
  gemm,
  GEMM_VERSIONS,
  gemmGpuTiles,
  gemmOperandLoad,
  type GemmOptions,
  type GemmTune,
  type GemmVersion,
} from "./gemm.ts";

/** Storage of a case: f32, f16, or "w16" (f32 activations and epilogue, f16 weights). */
type DType = "f32" | "f16" | "w16";

interface Case {
  M: number;
  N: number;
  K: number;
  bias?: boolean;
  activation?: GemmActivation;
  residual?: boolean;
  /** Gate rows (B); rowsPerGate = ceil(M / B) unless it divides. */
  gateRows?: number;
  /** Tile knobs (version 2: the 64-row tiles of small grids on GPUs). */
  tune?: GemmTune;
}

/** Rounds to f16 and back, as an f16 upload does. */
function r16(a: Float32Array): Float32Array {
  return Float32Array.from(Float16Array.from(a));
}

/**
 * Runs one case on the GPU and the reference. Outputs are O(1): x ~ N(0,1), w ~ N(0,1/K).
 * f32: |err| ≤ 1e-4 + 1e-4·|ref| (accumulation-order differences, K up to 4608).
 * f16: inputs rounded to f16 for the reference as well; the output is rounded once to f16
 * (half an ulp is 2^-12 relative), so |err| ≤ 1e-3 + 1e-3·|ref|. w16: the weights rounded
 * to f16 for the reference too, the rest f32: the f32 tolerance.
 */
async function check(rt: Runtime, version: GemmVersion, dt: DType, c: Case, seed: number) {
  const g = new Prng(seed);
  const { M, N, K } = c;
  const round = dt === "f16" ? r16 : (a: Float32Array) => a;
  const act = dt === "w16" ? "f32" : dt; // the storage of x, the epilogue and the output
  const xs = round(g.normals(M * K));
  const ws = (dt === "w16" ? r16 : round)(g.normals(N * K).map((v) => v / Math.sqrt(K)));
  const bias = c.bias ? round(g.normals(N).map((v) => 0.5 * v)) : undefined;
  const res = c.residual ? round(g.normals(M * N)) : undefined;
  const B = c.gateRows ?? 0;
  const gate = B ? round(g.normals(B * N)) : undefined;
  const rowsPerGate = B ? Math.ceil(M / B) : undefined;
  const up = (a: Float32Array | undefined, shape: number[]): Tensor | undefined =>
    a ? uploadTensor(rt, a, shape, act) : undefined;
  const opts: GemmOptions = {
    version,
    tune: c.tune,
    activation: c.activation,
    bias: up(bias, [N]),
    residual: up(res, [M, N]),
    gate: up(gate, [B, N]),
    rowsPerGate,
  };
  const x = uploadTensor(rt, xs, [M, K], act);
  const w = uploadTensor(rt, ws, [N, K], dt === "f32" ? "f32" : "f16");
  const got = await runAndRead(rt, (rec) => gemm(rec, x, w, opts));
  const want = gemmRef(xs, ws, M, N, K, {
    bias,
    activation: c.activation,
    residual: res,
    gate,
    rowsPerGate,
  });
  const tol = dt === "f16" ? 1e-3 : 1e-4;
  const load = dt === "w16" ? "w16" : gemmOperandLoad(version, dt, K);
  assertClose(got, want, {
    atol: tol,
    rtol: tol,
    msg: `v${version} ${dt} ${load} M${M} N${N} K${K}`,
  });
}

// Odd shapes: K not a multiple of 4 (scalar loads), tiles crossed in M and N, M = 1,
// K = 4608 (the DiT FFN width), and every epilogue term, with 2 gate rows (batch 2).
// Version 2 (the GPU kernel) compiles slowly on CPU adapters, so its M = 1 case reuses the
// pipeline of the case before it (same loads, no epilogue) and its f16 test has one case.
const CASES: Case[] = [
  {
    M: 66,
    N: 71,
    K: 53,
    bias: true,
    activation: "gelu",
    residual: true,
    gateRows: 2,
  },
  { M: 130, N: 129, K: 260 },
  { M: 1, N: 67, K: 4608, bias: true, activation: "silu" },
  { M: 17, N: 33, K: 40, bias: true, activation: "quickGelu" },
];

for (const version of GEMM_VERSIONS) {
  Deno.test(`gemm v${version} f32 matches the reference at odd shapes`, gpuTest, async () => {
    await withRuntime(async (rt) => {
      let seed = 10 * version;
      for (const c of CASES) {
        const plain = version === 2 && c.K === 4608;
        await check(rt, version, "f32", plain ? { M: c.M, N: c.N, K: c.K } : c, seed++);
      }
      if (version === 2) {
        // 64×128 tiles: the epilogue case, tiles crossed.
        await check(rt, 2, "f32", { ...CASES[0], tune: { ty: 8 } }, seed++);
        // The GPU defaults (one buffer, warp patches; 130×129 crosses tiles both ways), the
        // GPU's small-grid tiles, and one buffer at BK 8 (260 = 32 tiles of 8 and a part).
        const gpu = { lmap: 1, wmap: 1, sbuf: 1 };
        await check(rt, 2, "f32", { ...CASES[1], tune: gpu }, seed++);
        await check(
          rt,
          2,
          "f32",
          { ...CASES[1], tune: { ...gpu, ...gemmGpuTiles(130, 129) } },
          seed++,
        );
        await check(rt, 2, "f32", { ...CASES[1], tune: { sbuf: 1, bk: 8 } }, seed++);
      }
    });
  });

  Deno.test(`gemm v${version} f16 matches the reference within f16 rounding`, gpuTest, async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.f16) return;
      let seed = 100 + 10 * version;
      // K = 53: scalar loads; K = 264 (a multiple of 8): vec4 or packed f16 × 8 loads.
      if (version !== 2) {
        await check(rt, version, "f16", { M: 5, N: 37, K: 53, residual: true }, seed++);
        await check(rt, version, "f16", CASES[2], seed++); // M = 1, K = 4608, bias + silu
      }
      await check(rt, version, "f16", {
        M: 33,
        N: 19,
        K: 264,
        bias: true,
        activation: "gelu",
        residual: true,
        gateRows: 3,
      }, seed++);
    });
  });
}

Deno.test(
  "gemm v2 staging f16 tiles as f16 (tune.hs) gives the same bits as staging them as f32",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      if (!rt.info.f16) return;
      // The GPU's knobs (one buffer, warp patches) and the CPU's; tiles crossed both ways.
      const c: Case = { M: 130, N: 129, K: 264, bias: true, activation: "gelu", gateRows: 2 };
      for (const knobs of [{ lmap: 1, wmap: 1, sbuf: 1 }, { lmap: 0, wmap: 0, sbuf: 0 }]) {
        await check(rt, 2, "f16", { ...c, tune: { ...knobs, hs: 1 } }, 7);
        const g = new Prng(8);
        const x = uploadTensor(rt, g.normals(c.M * c.K), [c.M, c.K], "f16");
        const w = uploadTensor(rt, g.normals(c.N * c.K).map((v) => v / 16), [c.N, c.K], "f16");
        const run = (hs: number) =>
          runAndRead(rt, (rec) => gemm(rec, x, w, { version: 2, tune: { ...knobs, hs } }));
        // f16 operands are exact in f16 tiles, and the sums run in the same order.
        assertEquals(await run(1), await run(0));
      }
    });
  },
);

Deno.test("gemm: f16 weights with f32 activations (w16) in every version", gpuTest, async () => {
  // No shader-f16 needed: the halves are unpacked with core WGSL's unpack2x16float.
  await withRuntime(async (rt) => {
    for (const version of GEMM_VERSIONS) {
      const c = version === 2
        ? { M: 130, N: 129, K: 260 } // v2 compiles slowly on CPU adapters: one plain case
        : {
          M: 66,
          N: 71,
          K: 52,
          bias: true,
          activation: "gelu" as const,
          residual: true,
          gateRows: 2,
        };
      await check(rt, version, "w16", c, 300 + version);
    }
    const x = uploadTensor(rt, new Float32Array(6), [2, 3]);
    const w = uploadTensor(rt, new Float32Array(6), [2, 3], "f16");
    assertThrows(() => gemm(new Recorder(rt), x, w), RangeError, "K % 4 == 0");
  });
});

Deno.test(
  "gemm v4 (thin) matches the reference at a branch's shape, any column knob",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // N = R = 32 at the DiT's K: the default knob (2 columns an invocation) fills one tile;
      // 1 and 3 give several tiles across N and a partial one.
      const [M, N, K] = [70, 32, 1152];
      const g = new Prng(41);
      const xs = g.normals(M * K);
      const ws = g.normals(N * K).map((v) => v / Math.sqrt(K));
      const want = gemmRef(xs, ws, M, N, K);
      const x = uploadTensor(rt, xs, [M, K]);
      const w = uploadTensor(rt, ws, [N, K]);
      for (const tune of [{}, { ct: 1 }, { ct: 3 }]) {
        const got = await runAndRead(rt, (rec) => gemm(rec, x, w, { version: 4, tune }));
        assertClose(got, want, { atol: 1e-4, rtol: 1e-4, msg: `ct ${JSON.stringify(tune)}` });
      }
      assertThrows(
        () => gemm(new Recorder(rt), x, w, { version: 4, tune: { ct: 9 } }),
        RangeError,
        "ct",
      );
    });
  },
);

Deno.test("gemm v3 covers its 4-wide f16 loads and small register blocks", gpuTest, async () => {
  await withRuntime(async (rt) => {
    await check(rt, 3, "f32", { M: 7, N: 13, K: 36, bias: true }, 7);
    if (rt.info.f16) await check(rt, 3, "f16", { M: 9, N: 11, K: 44, activation: "silu" }, 8);
    const g = new Prng(9);
    const [M, N, K] = [5, 9, 24];
    const xs = g.normals(M * K);
    const ws = g.normals(N * K);
    const x = uploadTensor(rt, xs, [M, K]);
    const w = uploadTensor(rt, ws, [N, K]);
    const got = await runAndRead(
      rt,
      (rec) => gemm(rec, x, w, { version: 3, tune: { rt: 3, ct: 5, wg: 8 } }),
    );
    assertClose(got, gemmRef(xs, ws, M, N, K), { atol: 1e-4, rtol: 1e-4, msg: "rt 3 ct 5" });
  });
});

Deno.test(
  "gemm keeps leading dims, writes into out, picks the version by adapter",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      assertEquals(defaultGemmVersion(rt), rt.info.fallback ? 3 : 2);
      const v = (M: number, K: number, dtype: "f32" | "f16") =>
        defaultGemmVersion(rt, { M, K, dtype });
      if (rt.info.fallback) {
        assertEquals([v(2048, 128, "f32"), v(2048, 128, "f16"), v(2048, 132, "f16")], [2, 3, 2]);
        assertEquals(v(16, 128, "f32"), 3);
      } else {
        // GPUs: version 4 for f32 with at most 128 rows (not for convolutions), else 2.
        assertEquals([v(1, 8, "f32"), v(128, 8, "f32"), v(129, 8, "f32")], [4, 4, 2]);
        assertEquals([v(4096, 1152, "f16"), v(1, 8, "f16")], [2, 2]);
        assertEquals(defaultGemmVersion(rt, { M: 1, K: 8, dtype: "f32", conv: true }), 2);
      }
      const g = new Prng(3);
      const [B, T, K, N] = [2, 3, 8, 5];
      const xs = g.normals(B * T * K);
      const ws = g.normals(N * K);
      const x = uploadTensor(rt, xs, [B, T, K]);
      const w = uploadTensor(rt, ws, [N, K]);
      const out = uploadTensor(rt, new Float32Array(B * T * N), [B * T, N]);
      const rec = new Recorder(rt);
      const y = gemm(rec, x, w);
      assertEquals([...y.shape], [B, T, N]);
      const into = gemm(rec, x, w, { out });
      assertEquals(into, out);
      await rec.submit();
      const got = await runAndRead(rt, (r) => gemm(r, x, w, { out }));
      assertClose(got, gemmRef(xs, ws, B * T, N, K), { atol: 1e-5, rtol: 1e-5 });
    });
  },
);

Deno.test("gemm rejects bad shapes, dtypes, aliasing and knobs", gpuTest, async () => {
  await withRuntime((rt) => {
    const t = (shape: number[], dt: "f32" | "f16" = "f32") =>
      uploadTensor(rt, new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, dt);
    const x = t([4, 8]);
    const w = t([6, 8]);
    const rec = new Recorder(rt);
    assertThrows(() => gemm(rec, x, t([6, 7])), RangeError, "[N, 8]");
    assertThrows(() => gemm(rec, t([8]), w), RangeError, "[M, K]");
    assertThrows(() => gemm(rec, x, w, { bias: t([5]) }), RangeError, "bias");
    assertThrows(() => gemm(rec, x, w, { residual: t([4, 5]) }), RangeError, "residual");
    assertThrows(() => gemm(rec, x, w, { gate: t([3, 6]) }), RangeError, "rowsPerGate");
    assertThrows(
      () => gemm(rec, x, w, { gate: t([1, 6]), rowsPerGate: 2 }),
      RangeError,
      "gate has 1",
    );
    const res = t([4, 6]);
    assertThrows(() => gemm(rec, x, w, { residual: res, out: res }), RangeError, "residual");
    assertThrows(() => gemm(rec, x, w, { version: 5 as GemmVersion }), RangeError, "version");
    assertThrows(() => gemm(rec, x, w, { version: 2, tune: { bk: 12 } }), RangeError, "bk");
    assertThrows(() => gemm(rec, x, w, { version: 3, tune: { rt: 5 } }), RangeError, "rt");
    assertThrows(
      () => gemm(rec, x, w, { version: 2, tune: { tx: 4, ty: 16, wmap: 1 } }),
      RangeError,
      "wmap",
    );
    assertThrows(() => gemm(rec, x, w, { version: 2, tune: { sbuf: 2 } }), RangeError, "sbuf");
    // f16 tiles hold f16 operands exactly; f32 ones they would round.
    assertThrows(() => gemm(rec, x, w, { version: 2, tune: { hs: 1 } }), RangeError, "tune.hs");
    assertThrows(
      () => gemm(rec, x, w, { activation: "relu" as GemmActivation }),
      TypeError,
      "activation",
    );
    // f16 weights under f32 x are the w16 load; f32 weights under f16 x are a mismatch.
    if (rt.info.f16) assertThrows(() => gemm(rec, t([4, 8], "f16"), w), TypeError, "f16");
  });
});

Deno.test("gemm accumulate: out = epilogue(out + X·Wᵀ) in every version", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [M, N, K] = [37, 21, 20]; // partial tiles; K as thin as a low-rank branch's
    const g = new Prng(77);
    const [xs, ws, zs] = [g.normals(M * K), g.normals(N * K), g.normals(M * N)];
    const [bias, gate, res] = [g.normals(N), g.normals(N), g.normals(M * N)];
    const epi = { bias, gate, residual: res, activation: "gelu" as const };
    const plain = gemmRef(xs, ws, M, N, K);
    const want = plain.map((v, i) => {
      const n = i % N;
      const y = v + zs[i] + bias[n];
      return res[i] + gate[n] * (y / (1 + Math.exp(-1.5957691216057308 * (y + 0.044715 * y ** 3))));
    });
    const t = (a: Float32Array, s: number[]) => uploadTensor(rt, a, s);
    for (const version of GEMM_VERSIONS) {
      const out = t(zs, [M, N]);
      const got = await runAndRead(rt, (r) =>
        gemm(r, t(xs, [M, K]), t(ws, [N, K]), {
          ...epi,
          bias: t(bias, [N]),
          gate: t(gate, [1, N]),
          residual: t(res, [M, N]),
          accumulate: true,
          out,
          version,
        }));
      assertClose(got, want, { atol: 1e-4, rtol: 1e-4 });
    }
    assertThrows(
      () => gemm(new Recorder(rt, "t"), t(xs, [M, K]), t(ws, [N, K]), { accumulate: true }),
      RangeError,
      "accumulate needs out",
    );
  });
});
