/**
 * The register-tiled flash attention kernel (wgsl/attention_tiled.wgsl) for GPUs: its
 * launch shape for a head dim and workgroup-memory limit, and its kernel spec. The op
 * ({@linkcode attention} in attention.ts) picks it on GPUs and keeps the
 * one-row-per-thread kernel for CPU adapters and head dims that are not a multiple of 4.
 *
 * @module
 */
import { composeWgsl, expandMarkers, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import { ATTENTION_UNIFORM, type AttentionLaunch } from "./attention_launch.ts";
import src from "../../wgsl/attention_tiled.wgsl" with { type: "text" };
import ioSrc from "../../wgsl/attention_io.wgsl" with { type: "text" };

/**
 * Launch shape of the tiled kernel: RG·TC threads, 4·QU·RG query rows, 4·TC keys per block.
 */
export interface TiledShape {
  /** Row groups (threads along the query rows). */
  rg: number;
  /** Threads per row group (= keys per block / 4 = head-dim vec4s / cv). */
  tc: number;
  /** Head-dim vec4s of the output each thread accumulates. */
  cv: number;
  /** Quads of 4 query rows each thread owns: 1 (default) or 2. */
  qu?: number;
}

/** Workgroup memory (bytes) the tiled kernel needs for a head dim and shape. */
export function tiledBytes(headDim: number, s: TiledShape): number {
  const d4 = headDim / 4;
  const qu = s.qu ?? 1;
  const bq = 4 * s.rg * qu;
  const bk = 4 * s.tc;
  const vec4s = bq * (d4 + 1) + bk * Math.max(d4 + 1, s.rg * qu) + bk * d4;
  return 16 * vec4s + 4 * bq * s.tc + 4;
}

/**
 * The launch shape for a head dim within `limit` bytes of workgroup memory, or null when
 * the head dim is not a multiple of 4 or nothing fits. Prefers 64 query rows per workgroup,
 * then the fewest head-dim vec4s per thread with at most 10 threads per row group, and
 * never more than 8 of them (the 4·CV output vec4s live in registers: 16 would spill).
 */
export function tiledShape(headDim: number, limit: number): TiledShape | null {
  if (headDim % 4 !== 0 || headDim < 4 || headDim > 128) return null;
  const d4 = headDim / 4;
  const cvs = [];
  for (let cv = 1; cv <= Math.min(d4, 8); cv++) if (d4 % cv === 0 && d4 / cv <= 10) cvs.push(cv);
  for (const rg of [16, 8]) {
    for (const cv of cvs) {
      const s = { rg, tc: d4 / cv, cv };
      if (tiledBytes(headDim, s) <= limit) return s;
    }
  }
  return null;
}

/** Launch parameters of the tiled kernel: the shared sizes and layouts plus its shape. */
export interface TiledParams extends AttentionLaunch {
  shape: TiledShape;
}

const XYZW = ["x", "y", "z", "w"];
const R4 = [0, 1, 2, 3];

/**
 * The kernel source for CV head-dim vec4s and QU quads of rows per thread: each quad's
 * scores, statistics and 4×CV output accumulators are written out as named variables at
 * the file's //@ markers (see the kernel's header).
 */
export function tiledSource(cv: number, qu = 1): string {
  const U = Array.from({ length: qu }, (_, u) => u);
  const C = Array.from({ length: cv }, (_, c) => c);
  const ur = (f: (u: number, r: number) => string) => U.flatMap((u) => R4.map((r) => f(u, r)));
  const urc = (f: (u: number, r: number, c: number) => string) =>
    U.flatMap((u) => R4.flatMap((r) => C.map((c) => f(u, r, c))));
  const slot = (u: number, t: string) => `red[(ty * TC + ${t}) * QU + ${u}u]`;
  const blocks: Record<string, string[]> = {
    ML_DECL: U.flatMap((u) => [
      `var m${u} = vec4<f32>(-3.0e38); // running max of quad ${u}'s rows`,
      `var l${u} = vec4<f32>(0.0); // their sums over this thread's keys only`,
      `let q${u} = (4u * (QU * ty + ${u}u)) * D4P;`,
    ]),
    S_DECL: ur((u, r) => `var s${u}_${r} = vec4<f32>(0.0);`),
    S_ACC: [
      ...ur((u, r) => `let q${u}_${r} = qs[q${u} + ${r}u * D4P + d];`),
      ...ur((u, r) =>
        `s${u}_${r} += vec4<f32>(dot(q${u}_${r}, ka), dot(q${u}_${r}, kb), ` +
        `dot(q${u}_${r}, kc), dot(q${u}_${r}, kd));`
      ),
    ],
    S_MAX: [
      ...ur((u, r) => `s${u}_${r} += bias;`),
      ...U.map((u) =>
        `${slot(u, "tx")} = vec4<f32>(${R4.map((r) => `hmax(s${u}_${r})`).join(", ")});`
      ),
    ],
    SOFTMAX: U.flatMap((u) => [
      `var mn${u} = m${u};`,
      `for (var t = 0u; t < TC; t++) { mn${u} = max(mn${u}, ${slot(u, "t")}); }`,
      `let al${u} = exp2(m${u} - mn${u});`,
      `m${u} = mn${u};`,
      ...R4.map((r) =>
        `let p${u}_${r} = select(vec4<f32>(0.0), exp2(s${u}_${r} - mn${u}.${XYZW[r]}), ` +
        `s${u}_${r} > vec4<f32>(LIVE));`
      ),
      `l${u} = l${u} * al${u} + vec4<f32>(${R4.map((r) => `hsum(p${u}_${r})`).join(", ")});`,
      ...R4.map((c) =>
        `ks[(tx + ${c}u * TC) * RQ + ty * QU + ${u}u] = ` +
        `vec4<f32>(${R4.map((r) => `p${u}_${r}.${XYZW[c]}`).join(", ")});`
      ),
    ]),
    O_DECL: urc((u, r, c) => `var o${u}_${r}_${c} = vec4<f32>(0.0);`),
    O_SCALE: urc((u, r, c) => `o${u}_${r}_${c} *= al${u}.${XYZW[r]};`),
    O_ACC: [
      ...C.map((c) => `let v${c} = vs[vj + ${c}u];`),
      ...U.map((u) => `let pj${u} = ks[pa + ${u}u];`),
      ...urc((u, r, c) =>
        `o${u}_${r}_${c} = fma(vec4<f32>(pj${u}.${XYZW[r]}), v${c}, o${u}_${r}_${c});`
      ),
    ],
    L_STORE: U.map((u) => `${slot(u, "tx")} = l${u};`),
    L_REDUCE: U.flatMap((u) => [
      `var lt${u} = vec4<f32>(0.0);`,
      `for (var t = 0u; t < TC; t++) { lt${u} += ${slot(u, "t")}; }`,
      `let inv${u} = select(vec4<f32>(0.0), 1.0 / lt${u}, lt${u} > vec4<f32>(0.0));`,
    ]),
    O_STORE: [
      ...ur((u, r) => `let qrow${u}_${r} = row0 + 4u * (QU * ty + ${u}u) + ${r}u;`),
      ...urc((u, r, c) =>
        `store_row(qrow${u}_${r}, ob + qrow${u}_${r} * p.o_row + ${4 * c}u, ` +
        `o${u}_${r}_${c} * inv${u}.${XYZW[r]});`
      ),
    ],
  };
  return `const CV: u32 = ${cv}u;\nconst QU: u32 = ${qu}u;\n` +
    expandMarkers(src, blocks, "attention_tiled.wgsl");
}

const specs = new Map<string, KernelSpec<TiledParams>>();

/**
 * The tiled kernel's spec for a storage type, CV and QU (constants: they shape the named
 * variables the source is written with).
 */
export function attentionTiledSpec(
  storage: StorageType,
  cv: number,
  qu = 1,
): KernelSpec<TiledParams> {
  const key = `${storage}/${cv}/${qu}`;
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(tiledSource(cv, qu), { storage, libs: [ioSrc] });
    spec = {
      name: `attention_tiled_${storage}_cv${cv}${qu > 1 ? `_qu${qu}` : ""}`,
      source: c.source,
      preludeLines: c.preludeLines + 2,
      bindings: ["uniform", "read", "read", "read", "read", "read_write"],
      constants: (p) => {
        const d4p = p.hd / 4 + 1;
        return {
          HD: p.hd,
          RG: p.shape.rg,
          TC: p.shape.tc,
          KSZ: 4 * p.shape.tc * Math.max(d4p, p.shape.rg * (p.shape.qu ?? 1)),
        };
      },
      uniform: ATTENTION_UNIFORM,
      dispatch: (p) => [Math.ceil(p.tq / (4 * p.shape.rg * (p.shape.qu ?? 1))), p.h, p.b],
    };
    specs.set(key, spec);
  }
  return spec;
}
