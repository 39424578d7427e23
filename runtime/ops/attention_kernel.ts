/**
 * Which dense attention kernel runs, and in which launch shape: the caller's tuning checked
 * against the adapter's limits, or the default for the head dim and adapter.
 *
 * @module
 */
import type { AttentionTuning } from "./attention.ts";
import { chunkedFits, type ChunkedShape, chunkedShape } from "./attention_chunked.ts";
import { tiledBytes, tiledFits, type TiledShape, tiledShape } from "./attention_tiled.ts";

/** The kernel one attention launch runs. */
export type KernelChoice =
  | { kernel: "rows" }
  | { kernel: "tiled"; shape: TiledShape }
  | { kernel: "chunked"; shape: ChunkedShape };

/** The adapter facts the choice depends on. */
export interface KernelLimits {
  /** Workgroup memory (bytes) and invocations per workgroup. */
  memory: number;
  threads: number;
  /** A CPU adapter (lavapipe), where the row kernel is the default. */
  cpu: boolean;
  /**
   * The operands are f16: on GPUs the tiled kernel stages them as f16 (`TiledShape.half`;
   * PixArt-α's d72 5.34 against 6.75 ms on an H200). Default false.
   */
  f16?: boolean;
}

/**
 * CPU adapters' tiled shape: 16 row groups, 4 of them a thread, 4 head-dim vec4s a thread
 * (cv 4, at least 4 threads a row group), where it fits; else null (the row kernel). On
 * lavapipe at the bundled model's head dim 64 (1024 tokens × 2 heads) it takes 32.5 ms
 * against the row kernel's 37.4; at 72 (cv 6) the two tie, with 2 row groups a thread too
 * (bench/results/cpu-lavapipe/2026-11-29_attention_cpu_tiled.md; a whole image of the
 * bundled model: 16.8 → 15.4 s, …_emoji_{before_,}cpu_tiled.md).
 */
export function cpuTiledShape(d: number, memory: number, threads: number): TiledShape | null {
  if (d % 16 !== 0) return null;
  const shape: TiledShape = { rg: 16, tc: d / 16, cv: 4, qpt: 4 };
  if (shape.tc < 4 || !tiledFits(d, shape, memory, threads)) return null;
  return shape;
}

/**
 * The kernel for head dim `d`. Defaults: CPU adapters the tiled kernel in
 * {@linkcode cpuTiledShape} where it has one (head dim 64 on 32 KiB), else the row kernel
 * (and always when a row-kernel knob is given); GPUs the tiled one when it fits 64 query rows
 * a workgroup (PixArt's 72, 64; with f16 operands, staged as f16, FLUX's 128 too; 8 keys a
 * thread where they fit and fetch ahead, at 128 rows in f16 and 64 in f32: attention_tiled.ts
 * tiledShape), else the chunked one (FLUX's 128 in f32 on 48 KiB: 3.3× the tiled kernel's 32
 * threads), else the tiled one in smaller shapes, else the row kernel. A forced kernel or
 * shape that cannot run throws a RangeError naming it.
 */
export function chooseKernel(d: number, t: AttentionTuning, lim: KernelLimits): KernelChoice {
  const half = !lim.cpu && (lim.f16 ?? false); // GPUs stage f16 operands as f16
  if (t.kernel !== undefined && !["rows", "tiled", "chunked"].includes(t.kernel)) {
    throw new RangeError(
      `attention: tuning.kernel must be "rows", "tiled" or "chunked", got ${t.kernel}`,
    );
  }
  if (t.chunked && t.kernel !== "chunked") {
    throw new RangeError(`attention: tuning.chunked needs kernel "chunked"`);
  }
  if (t.tiled && t.kernel !== "tiled") {
    throw new RangeError(`attention: tuning.tiled needs kernel "tiled"`);
  }
  if (t.kernel === "chunked") {
    if (!t.chunked || !chunkedFits(d, t.chunked, lim.memory, lim.threads)) {
      throw new RangeError(
        `attention: tuning.chunked ${JSON.stringify(t.chunked)} must be a shape that splits ` +
          `head dim ${d} (≤ 8 vec4s a thread) within ${lim.memory} B of workgroup memory ` +
          `and ${lim.threads} threads`,
      );
    }
    return { kernel: "chunked", shape: t.chunked };
  }
  if (t.kernel === "tiled") {
    if (t.tiled) {
      const { rg, tc, cv } = t.tiled;
      const qpt = t.tiled.qpt ?? 1;
      if (t.tiled.half && !lim.f16) {
        throw new RangeError(`attention: tuning.tiled.half needs f16 operands`);
      }
      const kpt = t.tiled.kpt ?? 4;
      if ((kpt !== 4 && kpt !== 8) || (kpt === 8 && qpt !== 1)) {
        throw new RangeError(
          `attention: tuning.tiled.kpt must be 4, or 8 with qpt 1, got ${JSON.stringify(t.tiled)}`,
        );
      }
      if (4 * tc * cv !== d || tiledBytes(d, t.tiled) > lim.memory || rg < 1) {
        throw new RangeError(
          `attention: tuning.tiled ${JSON.stringify(t.tiled)} needs 4·tc·cv = head dim ${d} ` +
            `and at most ${lim.memory} B of workgroup memory`,
        );
      }
      if (![1, 2, 4].includes(qpt) || rg % qpt !== 0) {
        throw new RangeError(
          `attention: tuning.tiled.qpt must be 1, 2 or 4 and divide rg, got ${
            JSON.stringify(t.tiled)
          }`,
        );
      }
      if ((rg / qpt) * tc > lim.threads) {
        throw new RangeError(`attention: tuning.tiled has more than the adapter's threads`);
      }
      return { kernel: "tiled", shape: t.tiled };
    }
    const shape = tiledShape(d, lim.memory, half, lim.threads);
    if (!shape) {
      throw new RangeError(
        `attention: the tiled kernel needs a head dim that is a multiple of 4 (≤ 128) and ` +
          `fits ${lim.memory} B of workgroup memory, got ${d}`,
      );
    }
    return { kernel: "tiled", shape };
  }
  if (t.kernel === "rows") return { kernel: "rows" };
  if (lim.cpu) {
    // The row kernel's own knobs keep it.
    const rowKnobs = [t.threads, t.rowsPerThread, t.keys, t.dynamicHeadDim].some((v) =>
      v !== undefined
    );
    const shape = rowKnobs ? null : cpuTiledShape(d, lim.memory, lim.threads);
    return shape ? { kernel: "tiled", shape } : { kernel: "rows" };
  }
  const tiled = tiledShape(d, lim.memory, half, lim.threads);
  if (tiled && tiled.rg >= 16) return { kernel: "tiled", shape: tiled };
  const chunked = chunkedShape(d, lim.memory, lim.threads);
  if (chunked) return { kernel: "chunked", shape: chunked };
  return tiled ? { kernel: "tiled", shape: tiled } : { kernel: "rows" };
}
