/**
 * Quantized GEMM benchmark (issue 5): our integer W4A8/W8A8 GEMMs and the weight-only W4
 * GEMM against our f32 GEMM, and ONNX Runtime Web's MatMulNBits int4 as the peer, in one
 * process on one GPU. Every case is checked on sampled entries against a CPU reference
 * before it is timed.
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/qgemm_bench.ts
 *                          # + bench/results/<device>/<date>_qgemm.{json,md}
 *     WEBDIT_QGEMM_SWEEP=1 # + tile variants of the integer and skinny kernels
 *
 * GPU shapes: the DiT FFN M×K×N = 4096×1152×4608 (f32 vs W4A8 vs W8A8, TFLOP/s as 2·M·N·K),
 * the memory-bound 64×1152×4608 (f32 vs W4A16, ms) and 4096³ (W4A16 vs MatMulNBits).
 * Weights are random codes and LUTs (the kernels' speed does not depend on the values).
 * CPU adapter: the same cases at reduced shapes (names carry the shape), in GFLOP/s.
 *
 * @module
 */
import type { QuantizedWeight } from "../plugins/types.ts";
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import {
  createTensor,
  readTensor,
  readTensorRaw,
  type Tensor,
  uploadTensor,
} from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { actQuant } from "../runtime/ops/act_quant.ts";
import { defaultGemmVersion, gemm } from "../runtime/ops/gemm.ts";
import {
  defaultA16Version,
  defaultIntVersion,
  type IntTune,
  qgemmA16,
  type QGemmA16Version,
  qgemmInt,
  type QWeightGpu,
  type SkinnyTune,
  uploadQWeight,
  type UploadQWeightOptions,
} from "../runtime/ops/qgemm.ts";
import { unpackInt8 } from "../runtime/quant/pack.ts";
import { actQuantRef } from "../runtime/reference/act_quant.ts";
import type { QuantizedActivations } from "../runtime/quant/transform.ts";
import {
  decodeInt8,
  hasCompactTlq,
  int8Groups,
  int8Lut,
  isAffineGrouped,
  qgemmIntEntry,
} from "../runtime/reference/qgemm.ts";
import { type BenchCase, BenchSuite, deviceSlug, tflops } from "./harness.ts";
import { randomGroupedWeight, randomLutGroups, randomWeight, weightAt } from "./qgemm_weights.ts";
import { checkActCodes, checkSampled, productRef } from "./sampled_check.ts";
import type { PeerMatmul } from "./peers/ort.ts";
import { nbits4At, ortMatmulNBits, randomNbits4 } from "./peers/ort_nbits.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;
const UNIT = onGpu ? "TFLOP/s" : "GFLOP/s";
const rate = (flops: number, ms: number) => tflops(flops, ms) * (onGpu ? 1 : 1e3);
const SWEEP = Deno.env.get("WEBDIT_QGEMM_SWEEP") === "1";

/** How a TLQ weight went up: the compact parameters or the stored LUT (and its bytes a row). */
function tlqMode(q: QuantizedWeight, mode: number | undefined, expanded = false): string {
  const compact = mode === 5 || mode === 6;
  if (compact && !hasCompactTlq(q)) {
    throw new Error("compact mode for a weight without compact parameters");
  }
  if (mode === 6 && expanded) {
    return "MODE 6: Δ±/z± 8 B a row, int8 tables expanded once a call (one launch), MODE 2 GEMM";
  }
  const G = Number(q.meta.groupSize || 0);
  if (G) {
    return `MODE ${mode}: stored ${mode === 0 ? "f32 LUT" : "int8 LUT + scale"} a group of ${G}`;
  }
  return compact
    ? `MODE ${mode}: Δ±/z± 8 B a row, levels built in-kernel`
    : `MODE ${mode}: stored ${mode === 0 ? "f32 LUT" : "int8 LUT + row scale"}`;
}

const xCache = new Map<string, { xs: Float32Array; x: Tensor }>();
function activations(M: number, K: number): { xs: Float32Array; x: Tensor } {
  const key = `${M}x${K}`;
  let o = xCache.get(key);
  if (!o) {
    const xs = new Prng(M * 7 + K).uniforms(M * K, -1, 1);
    o = { xs, x: uploadTensor(rt, xs, [M, K]) };
    xCache.set(key, o);
  }
  return o;
}

function shapeName(M: number, K: number, N: number): string {
  return M === K && K === N ? `${M}` : `${M}x${K}x${N}`;
}

function f32Case(M: number, K: number, N: number, unit = UNIT, suffix = ""): BenchCase {
  const name = `gemm_f32_${shapeName(M, K, N)}${suffix}`;
  return {
    name,
    unit,
    setup: async () => {
      const { xs, x } = activations(M, K);
      const ws = new Prng(N + K).uniforms(N * K, -1, 1);
      const w = uploadTensor(rt, ws, [N, K]);
      const out = createTensor(rt, [M, N]);
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        for (let i = 0; i < reps; i++) gemm(rec, x, w, { out });
        return rec.submit();
      };
      await record(1);
      const check = checkSampled(name, await readTensor(rt, out), M, N, productRef(xs, ws, K));
      return {
        device: rt.device,
        run: record,
        value: unit === "ms" ? undefined : (ms) => rate(2 * M * N * K, ms),
        value2: unit === "ms" ? (ms) => rate(2 * M * N * K, ms) : undefined,
        note: `v${defaultGemmVersion(rt, { M, K, dtype: "f32" })}; ${check}`,
        dispose: () => {
          out.release();
          w.release();
        },
      };
    },
    unit2: unit === "ms" ? UNIT : undefined,
  };
}

function a16Case(
  M: number,
  K: number,
  N: number,
  o: {
    unit?: string;
    version?: QGemmA16Version;
    tune?: SkinnyTune;
    suffix?: string;
    tlq?: UploadQWeightOptions["tlq"];
  } = {},
): BenchCase {
  const unit = o.unit ?? UNIT;
  const version = o.version ?? defaultA16Version(rt, M);
  const name = `gemm_w4a16_${shapeName(M, K, N)}${o.suffix ?? ""}`;
  return {
    name,
    unit,
    unit2: unit === "ms" ? UNIT : undefined,
    setup: async () => {
      const { xs, x } = activations(M, K);
      const q = randomWeight("lut", N, K, 4, N * 3 + K);
      const w = uploadQWeight(rt, q, { a16: true, tlq: o.tlq });
      const out = createTensor(rt, [M, N]);
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        for (let i = 0; i < reps; i++) qgemmA16(rec, x, w, { out, version, tune: o.tune });
        return rec.submit();
      };
      await record(1);
      const check = checkSampled(name, await readTensor(rt, out), M, N, (m, n) => {
        let v = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          const p = xs[m * K + k] * weightAt(q, n, k);
          v += p;
          mag += Math.abs(p);
        }
        return { v, mag };
      });
      const tune = o.tune ? ` ${JSON.stringify(o.tune)}` : "";
      return {
        device: rt.device,
        run: record,
        value: unit === "ms" ? undefined : (ms) => rate(2 * M * N * K, ms),
        value2: unit === "ms" ? (ms) => rate(2 * M * N * K, ms) : undefined,
        note: `${version}${tune}, TLQ codes, ${tlqMode(q, w.a16?.mode)}; ${check}`,
        dispose: () => {
          out.release();
          w.release();
        },
      };
    },
  };
}

/** Activation quantization of an integer case: bits, and a scale per group (asymmetric or not). */
interface ActOpts {
  bits: number;
  group?: number;
  asym?: boolean;
}

/** The int8 activations of x (quantized once, outside the timed loop) and their host copy. */
async function quantizedActs(M: number, K: number, a: ActOpts) {
  const { x } = activations(M, K);
  const rec = new Recorder(rt);
  const xa = actQuant(rec, x, a.bits, { group: a.group, asym: a.asym });
  await rec.submit();
  const x8 = unpackInt8((await readTensorRaw(rt, xa.q)) as Uint32Array, M, K);
  return { xa, x8, sx: await readTensor(rt, xa.scales), x };
}

function intCase(
  kind: "w4a8" | "w8a8" | "w4a4",
  M: number,
  K: number,
  N: number,
  o: {
    tune?: IntTune;
    suffix?: string;
    withQuant?: boolean;
    tlq?: UploadQWeightOptions["tlq"];
    group?: number;
    asym?: boolean;
    /** Uniform W4 in weight groups of this many channels (MODE 7) instead of TLQ. */
    wgroup?: number;
    /** TLQ W4 with a LUT a group of this many channels (MODE 2 in groups). */
    tlqGroup?: number;
  } = {},
): BenchCase {
  const act: ActOpts = { bits: kind === "w4a4" ? 4 : 8, group: o.group, asym: o.asym };
  const grouping = (o.wgroup ? `_wg${o.wgroup}` : "") + (o.tlqGroup ? `_tlqg${o.tlqGroup}` : "") +
    (o.group ? `_g${o.group}${o.asym ? "asym" : ""}` : "");
  const name = `gemm_${kind}${grouping}_${shapeName(M, K, N)}${o.suffix ?? ""}`;
  return {
    name,
    unit: UNIT,
    setup: async () => {
      const { xa, x8, sx, x } = await quantizedActs(M, K, act);
      const q = o.wgroup
        ? randomGroupedWeight(N, K, 4, o.wgroup, N * 5 + K)
        : o.tlqGroup
        ? randomLutGroups(N, K, 4, o.tlqGroup, N * 5 + K)
        : kind !== "w8a8"
        ? randomWeight("lut", N, K, 4, N * 5 + K)
        : randomWeight("u8s", N, K, 8, N * 5 + K);
      const w: QWeightGpu = uploadQWeight(rt, q, { a16: false, int: true, tlq: o.tlq });
      const out = createTensor(rt, [M, N]);
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        for (let i = 0; i < reps; i++) {
          let a: QuantizedActivations = xa;
          if (o.withQuant) a = actQuant(rec, x, act.bits, { group: act.group, asym: act.asym });
          qgemmInt(rec, a, w, { out, tune: o.tune });
          if (o.withQuant) {
            a.q.release();
            a.scales.release();
          }
        }
        return rec.submit();
      };
      await record(1);
      // qgemmIntRef's arithmetic for the sampled entries, the weight decoded to int8 once.
      const wg = isAffineGrouped(q) ? int8Groups(q) : undefined;
      const lut = wg ? undefined : int8Lut(q);
      const w8 = wg?.w8 ?? decodeInt8(q, lut!);
      const wScale = wg?.scale ?? lut!.scale;
      const nx = act.group ? (M * K) / act.group : M;
      const zeros = act.asym ? sx.subarray(nx) : undefined;
      const check = checkSampled(name, await readTensor(rt, out), M, N, (m, n) => {
        const wGroup = wg?.groupSize ?? (lut!.groupSize < K ? lut!.groupSize : 0);
        const v = qgemmIntEntry(x8, sx, w8, wScale, K, m, n, act.group, zeros, wGroup).y;
        return { v, mag: Math.abs(v) };
      });
      const tune = o.tune ? ` ${JSON.stringify(o.tune)}` : "";
      const dot = rt.info.packedDot ? "dot4I8Packed" : "emulated dot";
      // qgemmInt's tiled default for TLQ compact: tables expanded once per call.
      const expanded = defaultIntVersion(rt) === "tiled" &&
        (o.tune?.tables ?? "expand") === "expand";
      return {
        device: rt.device,
        run: record,
        value: (ms) => rate(2 * M * N * K, ms),
        note: `${defaultIntVersion(rt)}${tune}, ${dot}, ${
          o.wgroup
            ? `uniform codes in weight groups of ${o.wgroup} (MODE 7)`
            : kind !== "w8a8"
            ? `TLQ codes, ${tlqMode(q, w.int?.mode, expanded)}`
            : "8-bit codes direct"
        }${actNote(act)}${o.withQuant ? ", activation quantization included" : ""}; ${check}`,
        dispose: () => {
          out.release();
          w.release();
        },
      };
    },
  };
}

/** ", A4 in groups of 16, asymmetric" (nothing for per-token A8). */
function actNote(a: ActOpts): string {
  if (!a.group && a.bits === 8) return "";
  const g = a.group ? ` in groups of ${a.group}${a.asym ? ", asymmetric" : ""}` : " per token";
  return `, A${a.bits}${g}`;
}

function actQuantCase(M: number, K: number): BenchCase {
  return {
    name: `act_quant_a8_${M}x${K}`,
    unit: "ms",
    setup: async () => {
      const { xs, x } = activations(M, K);
      // Checked before it is timed: one run's codes and scales against the CPU reference.
      const rec0 = new Recorder(rt);
      const a0 = actQuant(rec0, x, 8);
      await rec0.submit();
      const words = (await readTensorRaw(rt, a0.q)) as Uint32Array;
      const check = checkActCodes(
        `act_quant_a8_${M}x${K}`,
        unpackInt8(words, M, K),
        await readTensor(rt, a0.scales),
        actQuantRef(xs, M, K, 8),
        rt.info.fallback ? 1e-7 : undefined,
      );
      a0.q.release();
      a0.scales.release();
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        for (let i = 0; i < reps; i++) {
          const a = actQuant(rec, x, 8);
          a.q.release();
          a.scales.release();
        }
        return rec.submit();
      };
      return {
        device: rt.device,
        run: record,
        note: `${onGpu ? "wg" : "rows"} layout; ${check}`,
      };
    },
  };
}

const livePeers: PeerMatmul[] = [];

function ortNbitsCase(S: number): BenchCase {
  const name = `ort_matmulnbits_w4_${S}`;
  return {
    name,
    unit: UNIT,
    setup: async () => {
      const a = new Prng(S * 11).uniforms(S * S, -1, 1) as Float32Array<ArrayBuffer>;
      const w = randomNbits4(S, S, 32, S * 13);
      const p = await ortMatmulNBits(a, S, w);
      livePeers.push(p);
      await p.run();
      await p.device.queue.onSubmittedWorkDone();
      const check = checkSampled(name, await p.read(), S, S, (m, n) => {
        let v = 0;
        let mag = 0;
        for (let k = 0; k < S; k++) {
          const t = a[m * S + k] * nbits4At(w, n, k);
          v += t;
          mag += Math.abs(t);
        }
        return { v, mag: 30 * mag }; // ORT may accumulate in f16 on some paths: looser
      });
      return {
        device: p.device,
        run: async (reps) => {
          for (let i = 0; i < reps; i++) await p.run();
        },
        value: (ms) => rate(2 * S * S * S, ms),
        note: `${p.note}; ${check}`,
      };
    },
  };
}

const suite = new BenchSuite({
  what: "qgemm",
  denoIterations: onGpu ? 3 : 2,
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: {
        fallback: rt.info.fallback,
        packed_dot: rt.info.packedDot,
        a16_versions: onGpu ? "skinny (M <= 64), fused" : "dequant",
        int_version: defaultIntVersion(rt),
        sweep: SWEEP,
      },
    }),
  teardown: async () => {
    for (const p of livePeers.splice(0).reverse()) await p.dispose().catch(() => {});
  },
});

if (onGpu) {
  const [M, K, N] = [4096, 1152, 4608];
  suite.add(f32Case(M, K, N));
  suite.add(intCase("w4a8", M, K, N));
  suite.add(intCase("w8a8", M, K, N));
  suite.add(intCase("w4a8", M, K, N, { withQuant: true, suffix: "_with_act_quant" }));
  suite.add(intCase("w4a8", M, K, N, { tlq: "lut", suffix: "_lut_mode" }));
  // quantize --act-group: the GEMM rescales its sums every G channels (+ z·Σw when asymmetric).
  suite.add(intCase("w4a8", M, K, N, { group: 32 }));
  // quantize --group-size: uniform W4 with a scale per 64 weights of a row (+ A4 groups of 16).
  suite.add(intCase("w4a8", M, K, N, { wgroup: 64 }));
  suite.add(intCase("w4a4", M, K, N, { wgroup: 64, group: 16, asym: true }));
  // quantize --quantizer tlq --group-size: an int8 LUT and a scale per 64 weights of a row.
  suite.add(intCase("w4a8", M, K, N, { tlqGroup: 64 }));
  // The group size read from the uniform (before 2026-11-28's pipeline constant).
  for (const o of [{ wgroup: 64 }, { tlqGroup: 64 }]) {
    suite.add(
      intCase("w4a8", M, K, N, { ...o, tune: { groupConst: false }, suffix: "_gsize_uniform" }),
    );
  }
  suite.add(intCase("w4a4", M, K, N));
  suite.add(intCase("w4a4", M, K, N, { group: 16, asym: true }));
  suite.add(
    intCase("w4a4", M, K, N, { group: 16, asym: true, withQuant: true, suffix: "_with_act_quant" }),
  );
  suite.add(actQuantCase(M, K));
  suite.add(a16Case(M, K, N));
  suite.add(f32Case(64, K, N, "ms"));
  suite.add(a16Case(64, K, N, { unit: "ms" }));
  suite.add(a16Case(64, K, N, { unit: "ms", tlq: "lut", suffix: "_lut_mode" }));
  suite.add(a16Case(64, K, N, { unit: "ms", version: "fused", suffix: "_fused" }));
  suite.add(a16Case(4096, 4096, 4096));
  suite.add(ortNbitsCase(4096));
  if (SWEEP) {
    for (
      const t of [
        { tables: "workgroup" },
        { bkw: 8 },
        { tx: 8, ty: 16 },
        { tx: 16, ty: 8 },
      ] as IntTune[]
    ) {
      suite.add(
        intCase("w4a8", M, K, N, { tune: t, suffix: `_${JSON.stringify(t).replace(/\W+/g, "")}` }),
      );
    }
    // Grouped activations keep 64 f32 accumulators beside the 64 i32 sums: smaller tiles may
    // trade reuse for occupancy (a tile must not straddle a group: bkw 4 for groups of 16).
    for (const t of [{ tx: 8, ty: 16 }, { tx: 16, ty: 8 }, { tx: 8, ty: 8 }] as IntTune[]) {
      const suffix = `_${JSON.stringify(t).replace(/\W+/g, "")}`;
      suite.add(intCase("w4a4", M, K, N, { group: 16, asym: true, tune: t, suffix }));
      suite.add(intCase("w4a8", M, K, N, { group: 32, tune: t, suffix }));
    }
    for (
      const t of [
        { kl: 16, cg: 16, mr: 8, k2: false }, // the default before 2026-11-27's sweeps
        { kl: 8, cg: 16, mr: 16, k2: false }, // the default without two k steps an iteration
        { kl: 8, cg: 16, mr: 8 },
        { kl: 8, cg: 32, mr: 16 },
        { kl: 8, cg: 8, mr: 16 },
        { kl: 4, cg: 32, mr: 16 },
        { kl: 4, cg: 16, mr: 16 },
        { kl: 16, cg: 8, mr: 16 },
      ] as SkinnyTune[]
    ) {
      suite.add(
        a16Case(64, K, N, {
          unit: "ms",
          tune: t,
          suffix: `_${JSON.stringify(t).replace(/\W+/g, "")}`,
        }),
      );
    }
    // The M=64 rows once more at the end: the spread of one kernel within a run (2026-11-27:
    // 0.0675 and 0.0756 ms for the same skinny tile, equal minima; f32 within 1.5 %).
    suite.add(f32Case(64, K, N, "ms", "_again"));
    suite.add(a16Case(64, K, N, { unit: "ms", suffix: "_again" }));
  }
} else {
  // Reduced shapes (lavapipe ~5 GFLOP/s); the bundled model's FFN shape (2048 tokens × 192 → 768).
  const [M, K, N] = [256, 1152, 512];
  suite.add(f32Case(M, K, N));
  suite.add(intCase("w4a8", M, K, N));
  suite.add(intCase("w8a8", M, K, N));
  suite.add(actQuantCase(M, K));
  suite.add(f32Case(2048, 192, 768));
  suite.add(intCase("w4a8", 2048, 192, 768));
  suite.add(intCase("w4a8", 2048, 192, 768, { withQuant: true, suffix: "_with_act_quant" }));
  suite.add(intCase("w4a4", 2048, 192, 768, { group: 16, asym: true }));
  suite.add(intCase("w4a8", 2048, 192, 768, { wgroup: 64 }));
  suite.add(intCase("w4a4", 2048, 192, 768, { wgroup: 64, group: 16, asym: true }));
  suite.add(intCase("w4a8", 2048, 192, 768, { tlqGroup: 64 }));
  suite.add(a16Case(2048, 192, 768));
  suite.add(f32Case(64, K, N, "ms"));
  suite.add(a16Case(64, K, N, { unit: "ms" }));
  suite.add(a16Case(64, K, N, { unit: "ms", tlq: "lut", suffix: "_lut_mode" }));
  suite.add(a16Case(256, 256, 256));
  suite.add(ortNbitsCase(256));
}

suite.register();
