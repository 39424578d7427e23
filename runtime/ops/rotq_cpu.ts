/**
 * The rotate(+quantize) paths for CPU adapters, the defaults of rotq.ts on llvmpipe/lavapipe,
 * where the workgroup-memory kernels spend their time in per-lane loads and barriers:
 *
 * - outlier-aware (wgsl/rotq_outlier_cpu.wgsl): two barrier-free block products through a
 *   [M, K] scratch of the permuted stage-1 rows, or one product by the composed Q1·P·Q2
 *   where the transform carries it (K one block);
 * - hadamard (wgsl/rotq_hadamard_cpu.wgsl): an invocation a (token, block), its butterflies
 *   in a private array, where the register kernel (rotq_hadamard_reg.ts, faster on lavapipe
 *   too) cannot take the rows.
 *
 * When quantizing, both write f32 rotated rows that actQuant then quantizes (per token, or
 * a scale per group), so the codes are those of the one-pass GPU kernels.
 *
 * @module
 */
import { expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, type Recorder, uniformReadable } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import { actQuant } from "./act_quant.ts";
import { dummy, rotqSpec } from "./rotq_outlier_tiled.ts";
import type { HadamardTransformTensors, OutlierTransformTensors } from "./rotq.ts";
import cpuSrc from "../../wgsl/rotq_outlier_cpu.wgsl" with { type: "text" };
import mac4Src from "../../wgsl/rotq_mac4.wgsl" with { type: "text" };
import hadSrc from "../../wgsl/rotq_hadamard_cpu.wgsl" with { type: "text" };

const WG = 64;

/** Why an f32 [M, K] scratch (both CPU paths write one) does not bind here, or "". */
function scratchProblem(rt: Runtime, M: number, K: number): string {
  const maxBind = rt.bindingLimit;
  return M * K * 4 > maxBind ? `the [${M}, ${K}] f32 scratch is over the binding limit` : "";
}

/** Why the outlier-aware CPU kernels cannot take M rows of K with block B, or "". */
export function outlierCpuProblem(rt: Runtime, M: number, K: number, B: number): string {
  if (B % 4 !== 0) return `a block that is a multiple of 4, got ${B}`;
  if (Math.ceil(M / (WG * cpuRows(M))) > 65535 || K / 4 / cpuColumns(B) > 65535) {
    return `[${M}, ${K}] is more than the kernel's grid takes`;
  }
  return scratchProblem(rt, M, K);
}

// Lavapipe, 2048 tokens × 128 with Q a uniform (ms a product; compile of the first launch):
// 4 × 4 vec4 a lane 3.4–3.9 (0.4–0.6 s), 8 × 8 4.0–4.5 (2.4–2.8 s), 8 rows × 4 4.3–4.9.

/** Column vec4 a lane: 4 (16 columns), or the block's B/4 when fewer. */
function cpuColumns(B: number): number {
  return Math.min(4, B / 4);
}

/** Token rows a lane: 4, fewer where M is small (the workgroups would mostly compute clamped rows). */
function cpuRows(M: number): number {
  let rt = 4;
  while (rt > 1 && (rt / 2) * WG >= M) rt /= 2;
  return rt;
}

interface CpuParams {
  M: number;
  K: number;
  block: number;
  stage: number;
  quant: boolean;
}

/**
 * The lane's register code (see the WGSL's header): RT rows × CB column vec4 accumulators,
 * the loop over the block's k4 and the stores.
 */
function cpuBodySource(rt: number, cb: number): string[] {
  const rows = Array.from({ length: rt }, (_, i) => i);
  const cols = Array.from({ length: cb }, (_, j) => j);
  const lines = rows.map((i) => `let x${i} = min(r0 + ${i}u * WG, p.M - 1u);`);
  for (const i of rows) lines.push(...cols.map((j) => `var a${i}_${j} = vec4<f32>(0.0);`));
  lines.push("for (var k4 = 0u; k4 < B4; k4++) {");
  lines.push("  let sc = scale(k0 + k4);", "  let qi = 4u * k4 * B4 + cq; // rows 4·k4.. of Q");
  lines.push(...rows.map((i) => `  let v${i} = input(x${i}, k0 + k4, sc);`));
  for (const j of cols) {
    const q = [0, 1, 2, 3].map((r) => `q[qi + ${r ? `${r}u * B4 + ` : ""}${j}u]`);
    lines.push(`  let qa${j} = ${q[0]}; let qb${j} = ${q[1]};`);
    lines.push(`  let qc${j} = ${q[2]}; let qd${j} = ${q[3]};`);
    lines.push(
      ...rows.map((i) => `  a${i}_${j} = mac4(a${i}_${j}, v${i}, qa${j}, qb${j}, qc${j}, qd${j});`),
    );
  }
  lines.push("}");
  for (const i of rows) {
    lines.push(...cols.map((j) => `store(r0 + ${i}u * WG, 4u * (c4 + ${j}u), a${i}_${j});`));
  }
  return lines;
}

const specs = new Map<string, KernelSpec<CpuParams>>();
function outlierSpec(
  storage: StorageType,
  block: number,
  rt: number,
  uniformQ: boolean,
): KernelSpec<CpuParams> {
  const cb = cpuColumns(block);
  const key = `${storage}_b${block}_r${rt}${uniformQ ? "_uq" : ""}`;
  let spec = specs.get(key);
  if (!spec) {
    const q = uniformQ
      ? `var<uniform> q: array<vec4<f32>, ${block * block / 4}>;`
      : "var<storage, read> q: array<vec4<f32>>;";
    const src = expandMarkers(cpuSrc, {
      qdecl: [`@group(0) @binding(3) ${q}`],
      body: cpuBodySource(rt, cb),
    }, "rotq_outlier_cpu.wgsl");
    spec = rotqSpec(`rotq_outlier_cpu_${storage}`, src, storage, [4, 3], {
      constants: (p) => ({
        B: p.block,
        WG,
        CB: cb,
        RT: rt,
        STAGE: p.stage,
        QUANT: p.quant || p.stage === 1 ? 1 : 0, // stage 1 ignores it: one pipeline for both
      }),
      uniform: (p) => [p.M, p.K, 0, 0],
      dispatch: (p) => [Math.ceil(p.M / (WG * rt)), p.K / 4 / cb],
      libs: [mac4Src],
      uniformReads: uniformQ ? [2] : [],
    });
    specs.set(key, spec);
  }
  return spec;
}

/**
 * Records x [M, K] (f32/f16, M > 0; a block that is a multiple of 4) → ((x ⊙ s)·R1)·P·R2
 * through the CPU kernels (in one product by `t.composed` where it is given): in x's dtype,
 * or with `quant` as f32 rows for {@linkcode quantizeRotated}.
 */
export function rotateOutlierCpu(
  rec: Recorder,
  x: Tensor,
  t: OutlierTransformTensors,
  M: number,
  K: number,
  quant = false,
): Tensor {
  const rt = rec.runtime;
  const uniformQ = t.composed
    ? uniformReadable(rt, t.composed)
    : uniformReadable(rt, t.q1) && uniformReadable(rt, t.q2);
  const spec = outlierSpec(x.dtype as StorageType, t.block, cpuRows(M), uniformQ);
  const p = { M, K, block: t.block, quant };
  if (t.composed) {
    const out = createTensor(rt, x.shape, quant ? "f32" : x.dtype);
    rec.dispatch(spec, { ...p, stage: 3 }, [
      x,
      t.s,
      t.composed,
      t.dest,
      dummy(rt, 1),
      quant ? dummy(rt, 2) : out,
      quant ? out : dummy(rt, 3),
    ]);
    return out;
  }
  const tt = createTensor(rt, [M, K], "f32");
  rec.dispatch(spec, { ...p, stage: 1 }, [
    x,
    t.s,
    t.q1,
    t.dest,
    tt,
    dummy(rt, 2),
    dummy(rt, 3),
  ]);
  const out = createTensor(rt, x.shape, quant ? "f32" : x.dtype); // f32 for the quantizer
  rec.dispatch(spec, { ...p, stage: 2 }, [
    x,
    t.s,
    t.q2,
    t.dest,
    tt,
    quant ? dummy(rt, 2) : out,
    quant ? out : dummy(rt, 3),
  ]);
  tt.release(); // recorded work keeps the scratch valid until it has run
  return out;
}

/** Largest Hadamard block the CPU kernel takes (its private array: 4 KiB an invocation). */
export const HADAMARD_CPU_MAX_BLOCK = 1024;

/** Why the Hadamard CPU kernel cannot take M rows of K with `block` on `rt`, or "". */
export function hadamardCpuProblem(rt: Runtime, M: number, K: number, block: number): string {
  // A GPU compiler may fuse its scaling multiply into the first butterfly (the H200's does),
  // and its values would then not be the reference's.
  if (!rt.info.fallback) return "it runs on CPU adapters only";
  if (block < 4 || block > HADAMARD_CPU_MAX_BLOCK) {
    return `it takes blocks of 4 to ${HADAMARD_CPU_MAX_BLOCK}, got ${block}`;
  }
  return scratchProblem(rt, M, K);
}

interface HadParams {
  M: number;
  K: number;
  block: number;
  quant: boolean;
}

const hadSpecs = new Map<string, KernelSpec<HadParams>>();
function hadamardSpec(storage: StorageType, block: number): KernelSpec<HadParams> {
  const name = `rotq_hadamard_cpu_${storage}_b${block}`;
  let spec = hadSpecs.get(name);
  if (!spec) {
    const decl = "const BLOCK: u32 = 128u;";
    if (!hadSrc.includes(decl)) throw new Error(`rotq_hadamard_cpu.wgsl: no "${decl}" to set`);
    const src = hadSrc.replace(decl, `const BLOCK: u32 = ${block}u;`);
    spec = rotqSpec(name, src, storage, [2, 2], {
      constants: (p) => ({ WG, QUANT: p.quant ? 1 : 0 }),
      uniform: (p) => [p.M, p.K, 0, 0],
      dispatch: (p) => grid1d(Math.ceil(p.M * (p.K / p.block) / WG)),
    });
    hadSpecs.set(name, spec);
  }
  return spec;
}

/**
 * Records x [M, K] (M > 0) → x ⊙ s · blockdiag(H) through the CPU kernel (see
 * {@linkcode hadamardCpuProblem}): in x's dtype, or with `quant` as f32 rows for
 * {@linkcode quantizeRotated}.
 */
export function rotateHadamardCpu(
  rec: Recorder,
  x: Tensor,
  t: HadamardTransformTensors,
  M: number,
  K: number,
  quant = false,
): Tensor {
  const rt = rec.runtime;
  const out = createTensor(rt, x.shape, quant ? "f32" : x.dtype);
  rec.dispatch(hadamardSpec(x.dtype as StorageType, t.block), { M, K, block: t.block, quant }, [
    x,
    t.s,
    quant ? dummy(rt, 2) : out,
    quant ? out : dummy(rt, 3),
  ]);
  return out;
}

/**
 * Records actQuant of rotated f32 rows z (the CPU kernels' `quant` output): per token, or a
 * scale per `group` values (asymmetric with `asym`); z is released.
 */
export function quantizeRotated(
  rec: Recorder,
  z: Tensor,
  bits: number,
  group: number,
  asym: boolean,
): QuantizedActivations {
  const a = actQuant(rec, z, bits, { group, asym });
  z.release(); // recorded work keeps it valid until it has run
  return a;
}
