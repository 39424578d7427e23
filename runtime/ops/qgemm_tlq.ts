/**
 * The weight-decode WGSL of the quantized GEMMs (qgemm_dec.wgsl) and, for TLQ weights
 * uploaded compact (MODE 5/6), the fragments that rebuild their LUTs: in workgroup memory
 * (qgemm_tlq_wg.wgsl) where a kernel can build a table first, per weight otherwise
 * (qgemm_tlq_direct.wgsl); both on qgemm_tlq.wgsl's integer arithmetic.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import decSrc from "../../wgsl/qgemm_dec.wgsl" with { type: "text" };
import tlqSrc from "../../wgsl/qgemm_tlq.wgsl" with { type: "text" };
import tlqWgSrc from "../../wgsl/qgemm_tlq_wg.wgsl" with { type: "text" };
import tlqDirectSrc from "../../wgsl/qgemm_tlq_direct.wgsl" with { type: "text" };

/**
 * The decode libraries of a kernel that includes qgemm_dec.wgsl: the TLQ workgroup tables
 * for the compact modes where the kernel builds them, the per-weight TLQ fragment otherwise
 * (never reached by the other modes: MODE is an override). Returns [libs, spec-key suffix].
 */
export function decLibs(mode: number, table: boolean): [string[], string] {
  if (mode === 6 && !table) {
    throw new RangeError("qgemm: TLQ MODE 6 needs a kernel that builds tables");
  }
  const compact = (mode === 5 || mode === 6) && table;
  return [[decSrc, tlqSrc, compact ? tlqWgSrc : tlqDirectSrc], compact ? "_tlq" : ""];
}

/**
 * Words a row of the TLQ workgroup table: the f32 LUT (+ `pad` words, the kernel's
 * TLQ_PAD), and for MODE 6 s_row + int8 LUT.
 */
export function tlqStride(mode: number, bits: number, pad = 0): number {
  return 2 ** bits + pad + (mode === 6 ? 1 + 2 ** bits / 4 : 0);
}

/** Words of the TLQ workgroup table: TLQ_WORDS, read from wgsl/qgemm_tlq_wg.wgsl itself. */
export const TLQ_WORDS: number = Number(/const TLQ_WORDS: u32 = (\d+)u;/.exec(tlqWgSrc)?.[1]);
if (!(TLQ_WORDS > 0)) throw new Error("wgsl/qgemm_tlq_wg.wgsl: no `const TLQ_WORDS: u32 = …u;`");

/** Checks that `rows` rows of TLQ table fit it, and it the workgroup memory beside `used` B. */
export function checkTable(
  rt: Runtime,
  who: string,
  rows: number,
  mode: number,
  bits: number,
  used: number,
  pad = 0,
): void {
  const limit = rt.info.limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (rows * tlqStride(mode, bits, pad) > TLQ_WORDS || 4 * TLQ_WORDS + used > limit) {
    throw new RangeError(
      `${who}: the TLQ table of ${rows} rows exceeds its ${TLQ_WORDS} words, or with the kernel's ${used} B the workgroup memory (${limit} B); use a smaller tune`,
    );
  }
}
