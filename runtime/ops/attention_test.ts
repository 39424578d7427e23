import { assert, assertClose, assertEquals, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { type DType, uploadTensor } from "../gpu/tensor.ts";
import type { Runtime } from "../gpu/device.ts";
import { Prng } from "../io/prng.ts";
import { attentionRef, type HostHeads } from "../reference/attention.ts";
import { attention, type AttentionTuning, splitQkv } from "./attention.ts";
import { tiledBytes, tiledShape } from "./attention_tiled.ts";

/** f32: |err| ≤ 1e-5·RMS(ref) + 1e-6·|ref|; f16: 1e-2·RMS (inputs are rounded to f16). */
function tolerance(ref: Float32Array, dtype: DType) {
  const r = rms(ref);
  return dtype === "f32" ? { atol: 1e-5 * r, rtol: 1e-6 } : { atol: 1e-2 * r, rtol: 0 };
}

/** Rounds host data to what an f16 upload stores, so the reference sees the same inputs. */
function asStored(x: Float32Array, dtype: DType): Float32Array {
  return dtype === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
}

interface Case {
  b: number;
  tq: number;
  tk: number;
  h: number;
  d: number;
  dtype?: DType;
  tuning?: AttentionTuning;
  kvBatch?: number;
  seed?: number;
  /** A key mask keeping the first `keep` keys of each batch (diffusers' additive bias). */
  keep?: number;
}

async function checkCase(rt: Runtime, c: Case): Promise<void> {
  const dtype = c.dtype ?? "f32";
  const g = new Prng(c.seed ?? 11);
  const w = c.h * c.d;
  const kb = c.kvBatch ?? c.b;
  // Scaled so the softmax is neither uniform nor one-hot.
  const qs = asStored(g.normals(c.b * c.tq * w).map((x) => 1.5 * x), dtype);
  const ks = asStored(g.normals(kb * c.tk * w), dtype);
  const vs = asStored(g.normals(kb * c.tk * w), dtype);
  const q = uploadTensor(rt, qs, [c.b, c.tq, w], dtype);
  const k = uploadTensor(rt, ks, [kb, c.tk, w], dtype);
  const v = uploadTensor(rt, vs, [kb, c.tk, w], dtype);
  const ms = c.keep === undefined
    ? undefined
    : Float32Array.from({ length: c.b * c.tk }, (_, i) => (i % c.tk < c.keep! ? 1 : 0));
  const mask = ms && uploadTensor(rt, ms, [c.b, c.tk], dtype);
  const got = await runAndRead(
    rt,
    (r) => attention(r, q, k, v, { heads: c.h, mask, tuning: c.tuning }),
  );
  const host = (data: Float32Array, batch: number, tokens: number): HostHeads => ({
    data,
    batch,
    tokens,
    width: w,
  });
  const ref = attentionRef(host(qs, c.b, c.tq), host(ks, kb, c.tk), host(vs, kb, c.tk), {
    heads: c.h,
    headDim: c.d,
    mask: ms,
  });
  assertClose(got, ref, { ...tolerance(ref, dtype), msg: JSON.stringify(c) });
}

// Each distinct pipeline compiles for seconds on lavapipe. The adapter's default launch
// (on a CPU adapter: head dim read at run time, 16 threads × 8 rows) serves most cases
// with one pipeline per dtype; GPU is the launch GPUs get (head dim compiled in,
// 64 threads × 1 row), checked here too.
const GPU: AttentionTuning = { threads: 64, rowsPerThread: 1, dynamicHeadDim: false };

Deno.test(
  "attention matches the reference at odd shapes (f32, both launch shapes)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Tq, Tk not multiples of the tiles (2 key blocks); D = 72; batch 2.
      await checkCase(rt, { b: 2, tq: 77, tk: 93, h: 3, d: 72, tuning: GPU });
      await checkCase(rt, { b: 2, tq: 77, tk: 93, h: 3, d: 72 });
      // 3 rows a thread: the 4-row private arrays with a partial last group of rows.
      const rows3: AttentionTuning = { kernel: "rows", threads: 16, rowsPerThread: 3 };
      await checkCase(rt, { b: 2, tq: 77, tk: 93, h: 3, d: 72, tuning: rows3 });
    });
  },
);

Deno.test(
  "attention handles head dims 10 and 128, one query row and one key",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      await checkCase(rt, { b: 2, tq: 1, tk: 1, h: 2, d: 10 });
      await checkCase(rt, { b: 2, tq: 1, tk: 1, h: 2, d: 10, tuning: GPU });
      await checkCase(rt, { b: 1, tq: 70, tk: 5, h: 2, d: 10, tuning: GPU });
      // k/v of batch 1 shared by a batch of 3.
      await checkCase(rt, { b: 3, tq: 20, tk: 7, h: 2, d: 10, kvBatch: 1 });
      await checkCase(rt, { b: 1, tq: 33, tk: 70, h: 1, d: 128 });
    });
  },
);

Deno.test("attention f16 storage stays within 1e-2·RMS", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    await checkCase(rt, { b: 2, tq: 70, tk: 120, h: 2, d: 72, dtype: "f16" });
    await checkCase(rt, { b: 1, tq: 9, tk: 3, h: 3, d: 128, dtype: "f16" });
  });
});

Deno.test("attention reads a fused qkv tensor through column views", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [B, T, H, D] = [2, 37, 3, 72];
    const W = 3 * H * D;
    const xs = new Prng(5).normals(B * T * W);
    const qkv = uploadTensor(rt, xs, [B, T, W]);
    const [q, k, v] = splitQkv(qkv);
    const got = await runAndRead(rt, (r) => attention(r, q, k, v, { heads: H }));
    const hh = (column: number): HostHeads => ({ data: xs, batch: B, tokens: T, width: W, column });
    const ref = attentionRef(hh(0), hh(H * D), hh(2 * H * D), { heads: H, headDim: D });
    assertClose(got, ref, tolerance(ref, "f32"));
  });
});

Deno.test(
  "attention key mask: -10000 bias as diffusers, or dropped keys; never NaN (every kernel)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      await maskCases(rt, {});
      await maskCases(rt, { kernel: "tiled" });
      await maskCases(rt, { kernel: "tiled", tiled: { rg: 4, tc: 9, cv: 2, qpt: 2 } });
      await maskCases(rt, { kernel: "tiled", tiled: { rg: 4, tc: 9, cv: 2, qpt: 4 } });
      await maskCases(rt, { kernel: "chunked", chunked: { rg: 2, tc: 3, nch: 2 } });
    });
  },
);

async function maskCases(rt: Runtime, tuning: AttentionTuning): Promise<void> {
  const [B, Tq, Tk, H, D] = [3, 11, 45, 1, 72];
  const g = new Prng(9);
  const qs = g.normals(B * Tq * H * D);
  const ks = g.normals(B * Tk * H * D);
  const vs = g.normals(B * Tk * H * D);
  // Batch 0: 13 of 45 keys kept (padded text); batch 1: all kept; batch 2: all masked.
  const ms = new Float32Array(B * Tk);
  for (let j = 0; j < Tk; j++) {
    ms[j] = j < 13 ? 1 : 0;
    ms[Tk + j] = 1;
  }
  const q = uploadTensor(rt, qs, [B, Tq, H * D]);
  const k = uploadTensor(rt, ks, [B, Tk, H * D]);
  const v = uploadTensor(rt, vs, [B, Tk, H * D]);
  const mask = uploadTensor(rt, ms, [B, Tk]);
  const hq: HostHeads = { data: qs, batch: B, tokens: Tq, width: H * D };
  const hk: HostHeads = { data: ks, batch: B, tokens: Tk, width: H * D };
  const hv: HostHeads = { data: vs, batch: B, tokens: Tk, width: H * D };
  const n = Tq * H * D;

  const biased = await runAndRead(
    rt,
    (r) => attention(r, q, k, v, { heads: H, mask, tuning }),
  );
  const refBiased = attentionRef(hq, hk, hv, { heads: H, headDim: D, mask: ms });
  assertClose(biased, refBiased, tolerance(refBiased, "f32"));
  // The fully masked batch equals unmasked attention, as with diffusers' additive bias
  // (computed exactly here, where f32 scores near −10000 would lose ~1e-3).
  const plain = attentionRef(hq, hk, hv, { heads: H, headDim: D });
  assertClose(biased.subarray(2 * n), plain.subarray(2 * n), tolerance(plain, "f32"));

  const dropped = await runAndRead(
    rt,
    (r) => attention(r, q, k, v, { heads: H, mask, maskMode: "drop", tuning }),
  );
  const refDropped = attentionRef(hq, hk, hv, {
    heads: H,
    headDim: D,
    mask: ms,
    maskMode: "drop",
  });
  assertClose(dropped, refDropped, tolerance(refDropped, "f32"));
  assert(dropped.subarray(2 * n).every((x) => x === 0), "fully dropped rows are zeros");
  // The kept keys of batch 0 alone give the same result as the dropped-key mask.
  assertClose(dropped.subarray(0, n), biased.subarray(0, n), tolerance(refBiased, "f32"));

  // A [1, Tk] mask broadcasts over the batch.
  const one = uploadTensor(rt, ms.subarray(0, Tk), [1, Tk]);
  const bcast = await runAndRead(
    rt,
    (r) => attention(r, q, k, v, { heads: H, mask: one, tuning }),
  );
  const refB = attentionRef(hq, hk, hv, { heads: H, headDim: D, mask: ms, maskBatch: 1 });
  assertClose(bcast, refB, tolerance(refB, "f32"));
}

// The register-tiled kernel GPUs get by default (wgsl/attention_tiled.wgsl), forced here.
const TILED: AttentionTuning = { kernel: "tiled" };

Deno.test(
  "tiled attention matches the reference: odd shapes, head dims 16/64/72/128, shared k/v, f16",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Tq, Tk not multiples of the tiles (several key blocks); batch 2.
      await checkCase(rt, { b: 2, tq: 77, tk: 93, h: 3, d: 72, tuning: TILED });
      await checkCase(rt, { b: 2, tq: 1, tk: 1, h: 2, d: 16, tuning: TILED });
      await checkCase(rt, { b: 3, tq: 70, tk: 150, h: 2, d: 16, kvBatch: 1, tuning: TILED });
      if (rt.info.f16) {
        await checkCase(rt, { b: 2, tq: 70, tk: 120, h: 2, d: 72, dtype: "f16", tuning: TILED });
      }
      // The output tiles GPUs get at head dims 64 (4 vec4s per thread) and 128 (8), in row
      // groups small enough for a CPU adapter's workgroup memory.
      const shaped = (rg: number, tc: number, cv: number): AttentionTuning => ({
        kernel: "tiled",
        tiled: { rg, tc, cv },
      });
      await checkCase(rt, { b: 1, tq: 40, tk: 37, h: 2, d: 64, tuning: shaped(8, 4, 4) });
      await checkCase(rt, { b: 2, tq: 19, tk: 21, h: 1, d: 128, tuning: shaped(4, 4, 8) });
    });
  },
);

Deno.test(
  "tiled attention with 2 or 4 row groups a thread matches the reference: blocks, fetching ahead, f16",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const two = (rg: number, tc: number, cv: number, prefetch = true): AttentionTuning => ({
        kernel: "tiled",
        tiled: { rg, tc, cv, qpt: 2 },
        prefetch,
      });
      // Four row groups a thread: rows 4·ty, 4·(ty + 4), … of 16 row groups; partial last ones.
      const four: AttentionTuning = { kernel: "tiled", tiled: { rg: 16, tc: 4, cv: 4, qpt: 4 } };
      await checkCase(rt, { b: 2, tq: 70, tk: 150, h: 2, d: 64, tuning: four });
      // PixArt-α's head dim (8 row groups, not the GPU's 16: lavapipe's 32 KiB), staging each
      // block directly (18 vec4s a thread): several key blocks, a partial last one and a
      // partial second row group of a thread.
      await checkCase(rt, { b: 2, tq: 45, tk: 93, h: 3, d: 72, tuning: two(8, 9, 2) });
      // Fetching the next block ahead (4 vec4s a thread at d16) over 19 key blocks, and not.
      await checkCase(rt, { b: 2, tq: 37, tk: 150, h: 2, d: 16, tuning: two(8, 2, 2) });
      await checkCase(rt, { b: 1, tq: 37, tk: 150, h: 2, d: 16, tuning: two(8, 2, 2, false) });
      // d64 in the GPU's thread shape (2 vec4s a thread), shared k/v; a one-row query.
      await checkCase(rt, { b: 3, tq: 70, tk: 150, h: 2, d: 64, kvBatch: 1, tuning: two(8, 8, 2) });
      await checkCase(rt, { b: 2, tq: 1, tk: 1, h: 2, d: 16, tuning: two(4, 2, 2) });
      if (rt.info.f16) {
        await checkCase(rt, {
          b: 2,
          tq: 70,
          tk: 120,
          h: 2,
          d: 64,
          dtype: "f16",
          tuning: two(8, 8, 2),
        });
      }
    });
  },
);

Deno.test(
  "tiled attention staging f16 operands as f16 matches the reference; f32 operands refuse it",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const half = (rg: number, tc: number, cv: number, qpt?: 2): AttentionTuning => ({
        kernel: "tiled",
        tiled: { rg, tc, cv, half: true, ...(qpt ? { qpt } : {}) },
      });
      if (rt.info.f16) {
        // PixArt-α's GPU shape (fetching 5 vec4s ahead), several key blocks, partial last ones.
        const f16 = { dtype: "f16", b: 2, tq: 77, tk: 93, h: 2, d: 72 } as const;
        await checkCase(rt, { ...f16, tuning: half(16, 6, 3) });
        await checkCase(rt, { ...f16, keep: 40, tuning: half(16, 6, 3) }); // padded text keys
        // Two row groups a thread, shared k/v; one query row and one key.
        await checkCase(rt, { ...f16, d: 64, kvBatch: 1, tuning: half(8, 8, 2, 2) });
        await checkCase(rt, { ...f16, tq: 1, tk: 1, d: 16, tuning: half(4, 2, 2) });
      }
      const x = uploadTensor(rt, new Float32Array(2 * 8 * 72), [2, 8, 72]);
      assertThrows(
        () => attention(new Recorder(rt), x, x, x, { heads: 1, tuning: half(16, 6, 3) }),
        RangeError,
        "tuning.tiled.half",
      );
    });
  },
);

Deno.test(
  "tiled attention with 8 keys a thread matches the reference: blocks, fetching ahead, masks, f16",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const k8 = (rg: number, tc: number, cv: number, half?: boolean): AttentionTuning => ({
        kernel: "tiled",
        tiled: { rg, tc, cv, kpt: 8, ...(half ? { half } : {}) },
      });
      // 32 keys a block at d64, several blocks and a partial last one; shared k/v; one key.
      await checkCase(rt, { b: 2, tq: 45, tk: 93, h: 2, d: 64, tuning: k8(4, 4, 4) });
      await checkCase(rt, { b: 3, tq: 20, tk: 70, h: 1, d: 64, kvBatch: 1, tuning: k8(4, 4, 4) });
      await checkCase(rt, { b: 1, tq: 5, tk: 1, h: 2, d: 16, tuning: k8(8, 2, 2) });
      // Fetching ahead (4 vec4s a thread at d16) over 10 blocks, with padded keys.
      await checkCase(rt, { b: 2, tq: 37, tk: 150, h: 2, d: 16, keep: 100, tuning: k8(8, 2, 2) });
      // 9 vec4s of k and v a thread fetched ahead (the most; the f32 GPU shape's d72 at 16 row
      // groups fetches as many): d36 at 8 row groups, padded keys; 3 rows, shared k/v.
      await checkCase(rt, { b: 2, tq: 45, tk: 100, h: 2, d: 36, keep: 70, tuning: k8(8, 3, 3) });
      await checkCase(rt, { b: 2, tq: 3, tk: 30, h: 1, d: 36, kvBatch: 1, tuning: k8(8, 3, 3) });
      if (rt.info.f16) {
        // PixArt-α's GPU shape staged as f16, 48 keys a block, padded text keys.
        const f16 = { dtype: "f16", b: 2, tq: 77, tk: 93, h: 2, d: 72 } as const;
        await checkCase(rt, { ...f16, tuning: k8(16, 6, 3, true) });
        await checkCase(rt, { ...f16, keep: 40, tuning: k8(16, 6, 3, true) });
        // 32 row groups (the GPUs' f16 default; P's rows outnumber a k row's vec4s), fetching
        // ahead: a partial workgroup of 128 rows, and 3 rows.
        const d16 = { dtype: "f16", b: 2, h: 2, d: 16, tuning: k8(32, 4, 1, true) } as const;
        await checkCase(rt, { ...d16, tq: 150, tk: 140, keep: 100 });
        await checkCase(rt, { ...d16, tq: 3, tk: 70, kvBatch: 1 });
      }
    });
  },
);

Deno.test(
  "chunked attention matches the reference: odd shapes, head dims 16/64/72/128, shared k/v, f16",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const chunked = (rg: number, tc: number, nch: number): AttentionTuning => ({
        kernel: "chunked",
        chunked: { rg, tc, nch },
      });
      // FLUX's head dim, 16 threads a row group in 2 chunks as on GPUs (4 row groups, not 8:
      // lavapipe's 32 KiB), with several key blocks, a partial last block and row group.
      await checkCase(rt, { b: 2, tq: 45, tk: 150, h: 2, d: 128, tuning: chunked(4, 16, 2) });
      // 2 vec4s a thread and chunk; 4 chunks; one vec4 per chunk and thread at d72 and d64.
      await checkCase(rt, { b: 1, tq: 19, tk: 21, h: 1, d: 128, tuning: chunked(4, 8, 2) });
      await checkCase(rt, { b: 1, tq: 33, tk: 40, h: 2, d: 128, tuning: chunked(4, 8, 4) });
      await checkCase(rt, { b: 2, tq: 77, tk: 93, h: 3, d: 72, tuning: chunked(4, 9, 2) });
      await checkCase(rt, { b: 2, tq: 1, tk: 1, h: 2, d: 16, tuning: chunked(2, 2, 2) });
      await checkCase(rt, {
        b: 3,
        tq: 70,
        tk: 150,
        h: 2,
        d: 64,
        kvBatch: 1,
        tuning: chunked(4, 8, 2),
      });
      if (rt.info.f16) {
        await checkCase(rt, {
          b: 2,
          tq: 70,
          tk: 120,
          h: 2,
          d: 128,
          dtype: "f16",
          tuning: chunked(4, 16, 2),
        });
      }
    });
  },
);

Deno.test(
  "tiled and chunked attention read operands off a multiple of 4 element by element",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // q, k and v as columns 2.. of [B, T, 2 + H·D] tensors: no whole-vec4 loads there.
      const [B, Tq, Tk, H, D] = [2, 21, 30, 2, 16];
      const W = 2 + H * D;
      const g = new Prng(5);
      const wide = [Tq, Tk, Tk].map((t) => g.normals(B * t * W));
      const [q, k, v] = wide.map((x, i) => uploadTensor(rt, x, [B, i === 0 ? Tq : Tk, W]));
      const cols = (x: Float32Array, t: number) => {
        const y = new Float32Array(B * t * H * D);
        for (let r = 0; r < B * t; r++) y.set(x.subarray(r * W + 2, (r + 1) * W), r * H * D);
        return { data: y, batch: B, tokens: t, width: H * D };
      };
      const ref = attentionRef(cols(wide[0], Tq), cols(wide[1], Tk), cols(wide[2], Tk), {
        heads: H,
        headDim: D,
      });
      for (
        const tuning of [
          { kernel: "tiled", tiled: { rg: 4, tc: 2, cv: 2 } },
          { kernel: "chunked", chunked: { rg: 2, tc: 2, nch: 2 } },
        ] as AttentionTuning[]
      ) {
        const view = (t: typeof q) => ({ tensor: t, column: 2, width: H * D });
        const got = await runAndRead(
          rt,
          (r) => attention(r, view(q), view(k), view(v), { heads: H, tuning }),
        );
        assertClose(got, ref, { ...tolerance(ref, "f32"), msg: tuning.kernel });
      }
    });
  },
);

Deno.test("attention validates its operands", gpuTest, async () => {
  await withRuntime((rt) => {
    const q = uploadTensor(rt, new Float32Array(2 * 4 * 8), [2, 4, 8]);
    const k = uploadTensor(rt, new Float32Array(2 * 5 * 8), [2, 5, 8]);
    const k3 = uploadTensor(rt, new Float32Array(3 * 5 * 8), [3, 5, 8]);
    const rec = new Recorder(rt);
    assertThrows(() => attention(rec, q, k, k, { heads: 3 }), RangeError, "headDim");
    assertThrows(() => attention(rec, q, k3, k3, { heads: 2 }), RangeError, "batch");
    assertThrows(
      () => attention(rec, { tensor: q, column: 4 }, k, k, { heads: 2, headDim: 4 }),
      RangeError,
      "columns",
    );
    const mask = uploadTensor(rt, new Float32Array(4), [1, 4]);
    assertThrows(() => attention(rec, q, k, k, { heads: 2, mask }), RangeError, "mask");
    assertThrows(() => attention(rec, q, k, k, { heads: 2, out: q }), RangeError, "share");
    assertThrows(
      () => attention(rec, q, k, k, { heads: 2, tuning: { kernel: "rows", keys: 12 } }),
      RangeError,
      "keys",
    );
    assertThrows(
      () => attention(rec, q, k, k, { heads: 2, tuning: { kernel: "rows", rowsPerThread: 9 } }),
      RangeError,
      "rowsPerThread must be 1..8",
    );
    assertThrows(
      () =>
        attention(rec, q, k, k, {
          heads: 2,
          tuning: { kernel: "tiled", tiled: { rg: 8, tc: 3, cv: 1 } },
        }),
      RangeError,
      "tuning.tiled",
    );
    // A chunked shape that does not split the head dim (8 vec4s: 3 chunks), or is missing.
    for (
      const tuning of [{ kernel: "chunked", chunked: { rg: 2, tc: 1, nch: 3 } }, {
        kernel: "chunked",
      }] as AttentionTuning[]
    ) {
      assertThrows(
        () => attention(rec, q, k, k, { heads: 1, tuning }),
        RangeError,
        "tuning.chunked",
      );
    }
  });
});

Deno.test("tiledShape: 64 query rows where memory allows, few vec4s a thread, null when none", () => {
  // NVIDIA's 48 KiB: PixArt-α's d72 and d64 take 16 row groups; d128 in f32 needs 8 vec4s a thread.
  // d72 takes 3 vec4s a thread, 96 threads (whole warps), over 2 (144 threads); with 8 keys a
  // thread where such a shape fits and fetches ahead.
  assertEquals(tiledShape(72, 49152), { rg: 16, tc: 6, cv: 3, kpt: 8 });
  assertEquals(tiledShape(56, 49152), { rg: 16, tc: 7, cv: 2 }); // 7 vec4s a thread would fill warps
  assertEquals(tiledShape(64, 49152), { rg: 16, tc: 8, cv: 2 }); // 8 keys would not fit
  assertEquals(tiledShape(128, 49152), { rg: 8, tc: 4, cv: 8 });
  // lavapipe's 32 KiB: d64 takes 4 vec4s a thread; d128 does not fit (the row kernel runs).
  assertEquals(tiledShape(64, 32768), { rg: 16, tc: 4, cv: 4 });
  assertEquals(tiledShape(128, 32768), null);
  assertEquals(tiledShape(10, 49152), null); // not a multiple of 4
  for (const d of [16, 64, 72, 128]) {
    const s = tiledShape(d, 49152)!;
    assert(tiledBytes(d, s) <= 49152 && 4 * s.tc * s.cv === d, `d${d}`);
  }
});
