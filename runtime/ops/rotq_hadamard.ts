/**
 * The Hadamard rotate(+quantize) on the GPU: {@linkcode rotqHadamard} (x ⊙ s, a fast
 * Walsh–Hadamard transform of every `block`-wide block, then int8 codes + scales) and
 * {@linkcode rotateHadamard} (the rotated rows), with the choice of kernel: the register
 * kernel (runtime/ops/rotq_hadamard_reg.ts) where a row fits workgroup memory, else on CPU
 * adapters the barrier-free CPU kernel (runtime/ops/rotq_cpu.ts), else the workgroup kernel
 * (wgsl/rotq_hadamard.wgsl, a workgroup a row, rows in chunks where they do not fit).
 * Re-exported by rotq.ts.
 *
 * @module
 */
import type { StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import { checkActGroup, quantizedActivations } from "./act_quant.ts";
import { hadamardCpuProblem, quantizeRotated, rotateHadamardCpu } from "./rotq_cpu.ts";
import { type HadamardRegShape, hadamardRegShape, recordHadamardReg } from "./rotq_hadamard_reg.ts";
import {
  checkBits,
  dummy,
  rotqOutputs,
  rotqSpec,
  shapeOf,
  workgroupBytes,
} from "./rotq_outlier_tiled.ts";
import hadSrc from "../../wgsl/rotq_hadamard.wgsl" with { type: "text" };
import groupsSrc from "../../wgsl/rotq_groups.wgsl" with { type: "text" };

/** GPU tensors of a hadamard transform. */
export interface HadamardTransformTensors {
  /** Pre-multiplier s [K] f32: signs / (m · √block). */
  s: Tensor;
  /** Hadamard block (a power of two dividing K). */
  block: number;
}

interface Params {
  M: number;
  K: number;
  /** Columns in workgroup memory at once (default K). */
  chunk?: number;
  words: number;
  block: number;
  quant: boolean;
  bits: number;
  wg: number;
  /** Values a scale (0: the row), and asymmetric groups. */
  group?: number;
  asym?: boolean;
}

const hadSpecs = new Map<StorageType, KernelSpec<Params>>();

function hadamardSpec(storage: StorageType): KernelSpec<Params> {
  let spec = hadSpecs.get(storage);
  if (!spec) {
    // rotq_groups.wgsl after the kernel (naga panics on an override used before its declaration).
    spec = rotqSpec(`rotq_hadamard_${storage}`, hadSrc + groupsSrc, storage, [2, 4], {
      constants: (p) => ({
        WG: p.wg,
        BLOCK: p.block,
        CHUNK: p.chunk ?? p.K,
        QUANT: p.quant ? 1 : 0,
        BITS: p.bits,
        GROUP: p.group ?? 0,
        ASYM: p.asym ? 1 : 0,
      }),
      uniform: (p) => [p.M, p.K, p.words, 0],
      dispatch: (p) => grid1d(p.M),
    });
    hadSpecs.set(storage, spec);
  }
  return spec;
}

/** Threads of the hadamard kernel: a power of two in [32, 256], about K/4. */
function hadamardThreads(K: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < K) wg *= 2;
  return wg;
}

/** Kernel options of {@linkcode rotqHadamard} / {@linkcode rotateHadamard} (tests). */
export interface HadamardKernelOptions {
  /**
   * "registers": R rows a workgroup, the butterflies in registers (wgsl/rotq_hadamard_reg.wgsl;
   * the default where a row fits workgroup memory); "workgroup": a workgroup a row,
   * butterflies in workgroup memory, rows in chunks where they do not fit; "cpu": an
   * invocation a block, then actQuant (CPU adapters only, their default for blocks of 4 to
   * 1024 where the register kernel cannot run).
   */
  kernel?: "registers" | "workgroup" | "cpu";
  /** Register kernel: rows a workgroup (default: up to 256 threads, as memory allows). */
  rows?: number;
  /** Register kernel: values a thread (default 16 where K/16 threads fit, else 32). */
  values?: 16 | 32;
  /** At most this many columns in workgroup memory at once (rounded down to whole blocks). */
  chunk?: number;
  /** Quantize each run of `group` rotated values on its own scale (actQuant's `group`). */
  group?: number;
  /** With a group: asymmetric levels (actQuant's `asym`). */
  asym?: boolean;
}

/**
 * The kernel {@linkcode rotqHadamard} or {@linkcode rotateHadamard} runs for M rows of K with
 * `block` on `rt`, given `opts`: the one asked for; else, where no chunk is asked, the register
 * kernel where a row fits (on GPUs and CPU adapters alike: 512×128 on lavapipe 0.70 ms against
 * the CPU kernel's 0.92 and the workgroup kernel's 3.0), then the CPU kernel on CPU adapters
 * where it can run; else the workgroup kernel. Throws when the asked kernel cannot run.
 */
export function hadamardKernel(
  rt: Runtime,
  M: number,
  K: number,
  block: number,
  opts: HadamardKernelOptions = {},
  what = "rotqHadamard",
): "registers" | "workgroup" | "cpu" {
  return chooseHadamard(rt, M, K, block, opts, what).kernel;
}

/** {@linkcode hadamardKernel}'s choice, with the register kernel's shape where it runs. */
type HadamardChoice =
  | { kernel: "workgroup" | "cpu" }
  | { kernel: "registers"; shape: HadamardRegShape };

function chooseHadamard(
  rt: Runtime,
  M: number,
  K: number,
  block: number,
  opts: HadamardKernelOptions,
  what: string,
): HadamardChoice {
  const k = opts.kernel;
  if (k !== undefined && k !== "registers" && k !== "workgroup" && k !== "cpu") {
    throw new RangeError(
      `${what}: opts.kernel must be "registers", "workgroup" or "cpu", got ${k}`,
    );
  }
  if (k === "workgroup") return { kernel: k };
  const why = hadamardCpuProblem(rt, M, K, block);
  if (k === "cpu" && why) throw new RangeError(`${what}: the CPU kernel cannot run here: ${why}`);
  if (k === "cpu") return { kernel: k };
  if (opts.chunk !== undefined) {
    if (k) throw new RangeError(`${what}: opts.chunk is the workgroup kernel's, not the ${k}'s`);
    return { kernel: "workgroup" };
  }
  const reg = hadamardRegShape(rt, K, opts.rows, opts.values);
  if (typeof reg === "object") return { kernel: "registers", shape: reg };
  if (k) throw new RangeError(`${what}: the register kernel cannot run here: ${reg}`);
  return { kernel: why ? "workgroup" : "cpu" };
}

/**
 * Columns the Hadamard kernel holds in workgroup memory: K when the row fits, else the most
 * whole blocks that do (0 when not even one block fits). `cap` lowers it (tests).
 */
export function hadamardChunk(
  K: number,
  block: number,
  wg: number,
  limitBytes: number,
  cap = Infinity,
): number {
  const room = Math.min(Math.floor(limitBytes / 4) - wg, cap);
  if (K <= room) return K;
  return Math.floor(room / block) * block;
}

function recordHadamard(
  rec: Recorder,
  x: Tensor,
  t: HadamardTransformTensors,
  quant: boolean,
  bits: number,
  o: HadamardKernelOptions = {},
): { codes?: Tensor; scales?: Tensor; y?: Tensor; M: number; K: number } {
  const what = quant ? "rotqHadamard" : "rotateHadamard";
  const { M, K } = shapeOf(x, t.s, t.block, what);
  checkBits(bits);
  const group = o.group ?? 0;
  checkActGroup(group, K, what, o.asym);
  const rt = rec.runtime;
  const choice = chooseHadamard(rt, M, K, t.block, o, what);
  if (choice.kernel === "cpu" && M > 0) {
    if (!quant) return { y: rotateHadamardCpu(rec, x, t, M, K), M, K };
    const z = rotateHadamardCpu(rec, x, t, M, K, true);
    const a = quantizeRotated(rec, z, bits, group, o.asym ?? false);
    return { codes: a.q, scales: a.scales, M, K };
  }
  let chunk = K;
  const wg = hadamardThreads(K);
  if (choice.kernel !== "registers") {
    chunk = hadamardChunk(K, t.block, wg, workgroupBytes(rt), o.chunk);
    if (chunk === 0) {
      throw new RangeError(
        `${what}: a Hadamard block of ${t.block} does not fit this adapter's workgroup memory`,
      );
    }
  }
  const words = Math.ceil(K / 4);
  const { codes, scales, y } = rotqOutputs(rt, x, M, K, quant, group, o.asym ?? false);
  if (choice.kernel === "registers") {
    const p = { M, K, block: t.block, quant, bits, shape: choice.shape, group, asym: !!o.asym };
    if (M > 0) recordHadamardReg(rec, x, t.s, { codes, scales, y }, p);
    return { codes, scales, y, M, K };
  }
  // Rows past workgroup memory: rotated chunks wait in z for the row's scale.
  const z = quant && chunk < K ? createTensor(rt, [M, K], "f32") : undefined;
  if (M > 0) {
    rec.dispatch(
      hadamardSpec(x.dtype as StorageType),
      { M, K, chunk, words, block: t.block, quant, bits, wg, group, asym: o.asym },
      [
        x,
        t.s,
        codes ?? dummy(rt, 0),
        scales ?? dummy(rt, 1),
        y ?? dummy(rt, 2),
        z ?? dummy(rt, 3),
      ],
    );
  }
  z?.release(); // recorded work keeps it valid until it has run
  return { codes, scales, y, M, K };
}

/**
 * Records the fused randomised-Hadamard rotation + per-token quantization of x [..., K]
 * (f32/f16) with `bits` activation bits (default 8).
 */
export function rotqHadamard(
  rec: Recorder,
  x: Tensor,
  t: HadamardTransformTensors,
  bits = 8,
  opts: HadamardKernelOptions = {},
): QuantizedActivations {
  const r = recordHadamard(rec, x, t, true, bits, opts);
  return quantizedActivations(r.codes!, r.scales!, bits, r.K, opts);
}

/** Records x [..., K] → x ⊙ s · blockdiag(H) (same shape and dtype), no quantization. */
export function rotateHadamard(
  rec: Recorder,
  x: Tensor,
  t: HadamardTransformTensors,
  opts: HadamardKernelOptions = {},
): Tensor {
  const { chunk, kernel, rows, values } = opts;
  return recordHadamard(rec, x, t, false, 8, { chunk, kernel, rows, values }).y!;
}
