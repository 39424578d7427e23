/**
 * The Hadamard rotate(+quantize)'s register kernel (wgsl/rotq_hadamard_reg.wgsl), the GPUs'
 * default where a row fits workgroup memory: R rows a workgroup, V values a thread, the
 * butterflies in registers with an exchange through workgroup memory every log2 V stages. Its
 * shape choice, spec and recording; rotqHadamard (rotq_hadamard.ts) picks it.
 *
 * @module
 */
import { expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { dummy, rotqSpec, workgroupBytes } from "./rotq_outlier_tiled.ts";
import regSrc from "../../wgsl/rotq_hadamard_reg.wgsl" with { type: "text" };
import groupsSrc from "../../wgsl/rotq_groups.wgsl" with { type: "text" };

/** A register-kernel shape: V values a thread, K/V threads a row, `rows` rows a workgroup. */
export interface HadamardRegShape {
  /** Values a thread (16 or 32). */
  values: 16 | 32;
  /** Rows a workgroup. */
  rows: number;
}

/** Threads a workgroup the default shape aims at (rows are added up to it). */
const TARGET_THREADS = 256;

/** Workgroup slots of `rows` rows of K: a pad word every V values (the kernel's SLOTS). */
function regSlots(K: number, rows: number, values: number): number {
  return rows * K + Math.floor(rows * K / values);
}

/** Workgroup memory of `rows` rows of K: their slots and one atomic a row. */
function regBytes(K: number, rows: number, values: number): number {
  return 4 * regSlots(K, rows, values) + 4 * rows;
}

/**
 * Why the register kernel cannot take rows of K (any block) on `rt` at `rows` rows a
 * workgroup (default: as many as reach 256 threads and fit) and `values` a thread (default:
 * 16 where K allows, else 32), or its shape.
 */
export function hadamardRegShape(
  rt: Runtime,
  K: number,
  rows?: number,
  values?: 16 | 32,
): HadamardRegShape | string {
  const maxThreads = rt.info.limits.maxComputeInvocationsPerWorkgroup ?? 256;
  if (values !== undefined && values !== 16 && values !== 32) {
    throw new RangeError(`rotqHadamard: opts.values must be 16 or 32, got ${values}`);
  }
  const v = ([values ?? 16, values ?? 32] as const).find((v) => K % v === 0 && K / v <= maxThreads);
  if (v === undefined) {
    return `no ${values ?? "16 or 32"} values a thread divide K = ${K} in ${maxThreads} ` +
      "threads a row";
  }
  const tpr = K / v;
  if (rows !== undefined) {
    if (!Number.isInteger(rows) || rows < 1) {
      throw new RangeError(`rotqHadamard: opts.rows must be a positive integer, got ${rows}`);
    }
    if (rows * tpr > maxThreads) return `${rows} rows of ${tpr} threads pass ${maxThreads}`;
    if (regBytes(K, rows, v) > workgroupBytes(rt)) return `${rows} rows pass workgroup memory`;
    return { values: v, rows };
  }
  let r = Math.max(1, Math.floor(TARGET_THREADS / tpr));
  while (r > 1 && regBytes(K, r, v) > workgroupBytes(rt)) r--;
  if (regBytes(K, r, v) > workgroupBytes(rt)) return `a row of ${K} passes workgroup memory`;
  return { values: v, rows: r };
}

interface Params {
  M: number;
  K: number;
  words: number;
  block: number;
  quant: boolean;
  bits: number;
  shape: HadamardRegShape;
  group: number;
  asym: boolean;
}

/** Butterfly lines of the stages h = 1 … n/2 over the registers `run` (n of them), in order. */
function runStages(run: readonly number[]): string[] {
  const lines: string[] = [];
  for (let h = 1; h < run.length; h *= 2) {
    for (let j = 0; j < run.length; j++) {
      if (j & h) continue;
      const [a, b] = [`v${run[j]}`, `v${run[j + h]}`];
      lines.push(`{ let a = ${a}; let b = ${b}; ${a} = a + b; ${b} = a - b; }`);
    }
  }
  return lines;
}

/**
 * The kernel's register code for V values a thread and `block` (see the WGSL's header): phase
 * 0 runs the stages of the low log2 V index bits on V neighbouring values; each later phase,
 * after an exchange, the stages of the next log2 V bits (or what is left of the block's) on
 * runs of values 2^lo apart. Then the absmax of the rotated values.
 */
function regStagesSource(values: number, block: number): Record<string, string[]> {
  const V = values;
  const idx = Array.from({ length: V }, (_, i) => i);
  const n0 = Math.min(V, block);
  const stages = idx.map((i) => `var v${i} = buf[slot(a0 + ${i}u)];`);
  for (let r0 = 0; r0 < V; r0 += n0) stages.push(...runStages(idx.slice(r0, r0 + n0)));
  stages.push(...idx.map((i) => `buf[slot(a0 + ${i}u)] = v${i};`));
  const vb = Math.log2(V);
  const bits = Math.log2(block);
  for (let lo = vb; lo < bits; lo += vb) {
    const n = 2 ** Math.min(vb, bits - lo); // a run: index bits lo … lo + log2 n
    const P = block / V; // threads a block
    // Run c of thread u of a block takes the block's c·P + u-th value of the bits outside the
    // run (u fastest across threads), spread around the run's bits; register c·n + j holds
    // its j-th value.
    const body = [`let u = t % ${P}u;`, `let rb = r * K + (t / ${P}u) * ${block}u;`];
    for (let c = 0; c < V / n; c++) {
      body.push(`let o${c} = rb + spread(${c * P}u + u, ${lo}u, ${Math.log2(n)}u);`);
    }
    const at = (i: number) => `slot(o${Math.floor(i / n)} + ${(i % n) * 2 ** lo}u)`;
    body.push(...idx.map((i) => `v${i} = buf[${at(i)}];`));
    for (let c = 0; c < V; c += n) body.push(...runStages(idx.slice(c, c + n)));
    body.push(...idx.map((i) => `buf[${at(i)}] = v${i};`));
    stages.push("workgroupBarrier();", "{", ...body.map((l) => "  " + l), "}");
  }
  const absmax = ["var m = 0.0;", ...idx.map((i) => `m = max(m, abs(v${i}));`)];
  return { stages, absmax };
}

const V_LINE = "const V: u32 = 16u;";
if (!regSrc.includes(V_LINE)) throw new Error(`wgsl/rotq_hadamard_reg.wgsl: no "${V_LINE}"`);
const specs = new Map<string, KernelSpec<Params>>();

function regSpec(storage: StorageType, values: number, block: number): KernelSpec<Params> {
  const key = `${storage}/${values}/${block}`;
  let spec = specs.get(key);
  if (!spec) {
    const src = expandMarkers(
      regSrc.replace(V_LINE, `const V: u32 = ${values}u;`),
      regStagesSource(values, block),
      "rotq_hadamard_reg.wgsl",
    ) + groupsSrc;
    const name = `rotq_hadamard_reg${values}_b${block}_${storage}`;
    spec = rotqSpec(name, src, storage, [2, 3], {
      constants: (p) => {
        const tpr = p.K / p.shape.values;
        const r = p.shape.rows;
        return {
          TPR: tpr,
          R: r,
          WG: tpr * r,
          K: p.K,
          SLOTS: regSlots(p.K, r, p.shape.values),
          QUANT: p.quant ? 1 : 0,
          BITS: p.bits,
          GROUP: p.group,
          ASYM: p.asym ? 1 : 0,
        };
      },
      uniform: (p) => [p.M, p.K, p.words, 0],
      dispatch: (p) => grid1d(Math.ceil(p.M / p.shape.rows)),
    });
    specs.set(key, spec);
  }
  return spec;
}

/**
 * Records the register kernel on M rows of x [..., K] (checked by the caller): codes and
 * scales (quant) or the rotated rows y.
 */
export function recordHadamardReg(
  rec: Recorder,
  x: Tensor,
  s: Tensor,
  out: { codes?: Tensor; scales?: Tensor; y?: Tensor },
  p: Omit<Params, "words">,
): void {
  const rt = rec.runtime;
  rec.dispatch(regSpec(x.dtype as StorageType, p.shape.values, p.block), {
    ...p,
    words: Math.ceil(p.K / 4),
  }, [
    x,
    s,
    out.codes ?? dummy(rt, 0),
    out.scales ?? dummy(rt, 1),
    out.y ?? dummy(rt, 2),
  ]);
}
