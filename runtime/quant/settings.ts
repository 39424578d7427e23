/**
 * The settings of a quantize run, checked against the plugin registry and completed with
 * their defaults (the keep-FP patterns of the model's family, symmetric W8 with integer
 * activations…): what goes into an artifact's plan as `settings`.
 *
 * @module
 */
import type { PluginRegistry } from "../registry.ts";
import { CENTER_MODES } from "../reference/act_center.ts";
import {
  defaultKeepFp,
  defaultLowRankFit,
  isActGroup,
  isLowRank,
  LOW_RANK_FITS,
  type QuantSettings,
} from "./plan.ts";
import { ABITS } from "./qlinear.ts";
import { LOW_RANK_MAX } from "../ops/low_rank.ts";
import { TLQ_FITS } from "../../plugins/quantizers/tlq.ts";
import type { QuantizeOptions } from "./quantize_types.ts";

/**
 * Checks the settings against the registry; returns them complete (the keep-FP default is
 * that of the transformer class `className`).
 */
export function resolveSettings(
  o: QuantizeOptions,
  registry: PluginRegistry,
  className?: string,
): QuantSettings {
  const q = registry.get("quantizer", o.quantizer);
  if (!q.bits.includes(o.wbits)) {
    throw new RangeError(`quantizer "${q.name}" takes ${q.bits.join(", ")} bits, not ${o.wbits}`);
  }
  if (!(ABITS as readonly number[]).includes(o.abits)) {
    throw new RangeError(`abits must be one of ${ABITS.join(", ")}, got ${o.abits}`);
  }
  const rotation = o.rotation ?? "none";
  if (rotation !== "none") {
    if (!registry.has("rotation", rotation)) {
      const known = registry.list("rotation").map((p) => p.name).join(", ") || "none";
      throw new RangeError(`rotation "${rotation}" is not available yet (registered: ${known})`);
    }
    if (!registry.get("rotation", rotation).planLayer) {
      throw new RangeError(`rotation "${rotation}" is registered but cannot plan layers yet`);
    }
  }
  const attention = o.attention ?? "dense";
  const ap = registry.get("attention", attention); // throws naming the registered ones
  if (attention !== "dense" && !ap.plan) {
    throw new RangeError(`attention "${attention}" is registered but cannot plan yet`);
  }
  if (o.attnBits != null && !ap.bits.includes(o.attnBits)) {
    throw new RangeError(
      `attention "${attention}" runs ${ap.bits.join(", ")} bits, not ${o.attnBits}`,
    );
  }
  if (o.density != null && !(o.density > 0 && o.density <= 1)) {
    throw new RangeError(`density must be in (0, 1], got ${o.density}`);
  }
  if (o.paroAlpha !== undefined) {
    if (attention !== "paro") throw new RangeError('paroAlpha is the "paro" attention\'s');
    if (!(o.paroAlpha >= 0 && o.paroAlpha <= 1)) {
      throw new RangeError(`paroAlpha must be in [0, 1], got ${o.paroAlpha}`);
    }
  }
  // W8 codes feed the integer path symmetric: the default wherever a layer quantizes activations.
  const integer = o.abits < 16 || (o.abitsOverride ?? []).some((v) => v.abits < 16);
  const symmetric = o.symmetric ?? (o.quantizer === "uniform" && o.wbits === 8 && integer);
  if (o.gptq && !q.grid) throw new RangeError(`quantizer "${q.name}" has no code grid for GPTQ`);
  if (o.gptqDamp !== undefined) {
    if (!(o.gptqDamp >= 0) || !Number.isFinite(o.gptqDamp)) {
      throw new RangeError(`gptqDamp must be a finite number ≥ 0, got ${o.gptqDamp}`);
    }
    if (!o.gptq) throw new RangeError("gptqDamp needs gptq");
  }
  if (o.gptqRefit) {
    if (!o.gptq) throw new RangeError("gptqRefit needs gptq");
    if (!q.refit) throw new RangeError(`gptqRefit: quantizer "${q.name}" cannot refit its levels`);
    if (o.groupSize) throw new RangeError("gptqRefit refits one set of levels a row: no groupSize");
  }
  for (const [i, v] of (o.abitsOverride ?? []).entries()) {
    if (typeof v.pattern !== "string" || !v.pattern) {
      throw new RangeError(`abitsOverride[${i}]: the pattern must be a non-empty string`);
    }
    if (!(ABITS as readonly number[]).includes(v.abits)) {
      throw new RangeError(
        `abitsOverride[${i}] (${v.pattern}): abits must be one of ${
          ABITS.join(", ")
        }, got ${v.abits}`,
      );
    }
  }
  if (o.center !== undefined) {
    if (!CENTER_MODES.includes(o.center)) {
      throw new RangeError(`center must be ${CENTER_MODES.join(" or ")}, got ${o.center}`);
    }
    if (!integer) throw new RangeError("center needs quantized activations (abits below 16)");
  }
  if (o.actGroup !== undefined) {
    if (!isActGroup(o.actGroup)) {
      throw new RangeError(`actGroup must be a multiple of 16, got ${o.actGroup}`);
    }
    if (!integer) throw new RangeError("actGroup needs quantized activations (abits below 16)");
  }
  if (o.actAsym && !o.actGroup) throw new RangeError("actAsym needs actGroup");
  const [wg, ag] = [o.groupSize ?? 0, o.actGroup ?? 0];
  if (wg && ag && Math.max(wg, ag) % Math.min(wg, ag) !== 0) { // the GEMM flushes at the smaller
    throw new RangeError(`groupSize ${wg} and actGroup ${ag}: one must divide the other`);
  }
  if (o.cfgDelta && !integer) {
    throw new RangeError("cfgDelta needs quantized activations (abits below 16)");
  }
  if (o.lowRank !== undefined && o.lowRank !== 0 && !isLowRank(o.lowRank)) {
    throw new RangeError(`lowRank must be a positive integer (0: none), got ${o.lowRank}`);
  }
  if (o.lowRank && o.lowRank > LOW_RANK_MAX) {
    throw new RangeError(
      `lowRank is at most ${LOW_RANK_MAX} (a branch is meant to be thin), got ${o.lowRank}`,
    );
  }
  for (const [i, v] of (o.lowRankOverride ?? []).entries()) {
    if (typeof v.pattern !== "string" || !v.pattern) {
      throw new RangeError(`lowRankOverride[${i}]: the pattern must be a non-empty string`);
    }
    if (!Number.isInteger(v.rank) || v.rank < 0 || v.rank > LOW_RANK_MAX) {
      throw new RangeError(
        `lowRankOverride[${i}] (${v.pattern}): rank must be an integer in [0, ${LOW_RANK_MAX}], got ${v.rank}`,
      );
    }
  }
  const branches = !!o.lowRank || (o.lowRankOverride ?? []).some((v) => v.rank > 0);
  if (o.lowRankFit !== undefined) {
    if (!LOW_RANK_FITS.includes(o.lowRankFit)) {
      throw new RangeError(`lowRankFit must be ${LOW_RANK_FITS.join(", ")}, got ${o.lowRankFit}`);
    }
    if (!branches) throw new RangeError("lowRankFit needs a low-rank branch (lowRank)");
    if (o.lowRankFit === "hessian" && !o.gptq) { // its norm is GPTQ's calibration Gram matrix
      throw new RangeError(
        'lowRankFit "hessian" needs gptq (the calibration inputs\' Gram matrices)',
      );
    }
  }
  if (o.tlqFit !== undefined) {
    if (!TLQ_FITS.includes(o.tlqFit)) {
      throw new RangeError(`tlqFit must be ${TLQ_FITS.join(" or ")}, got ${o.tlqFit}`);
    }
    if (o.quantizer !== "tlq") throw new RangeError('tlqFit is the "tlq" quantizer\'s');
  }
  if (o.tlqAssign !== undefined) {
    if (o.tlqAssign !== "nearest" && o.tlqAssign !== "log") {
      throw new RangeError(`tlqAssign must be log or nearest, got ${o.tlqAssign}`);
    }
    if (o.quantizer !== "tlq") throw new RangeError('tlqAssign is the "tlq" quantizer\'s');
    if (o.tlqFit === "mse" && o.tlqAssign !== "nearest") {
      throw new RangeError('tlqAssign: tlqFit "mse" puts each weight on its nearest level');
    }
  }
  return {
    quantizer: o.quantizer,
    wbits: o.wbits,
    abits: o.abits,
    rotation,
    attention,
    density: o.density ?? null,
    attnBits: o.attnBits ?? null,
    groupSize: o.groupSize ?? 0,
    symmetric,
    ...(o.tlqFit === "mse" ? { tlqFit: "mse" as const } : {}),
    ...(o.tlqAssign === "nearest" && o.tlqFit !== "mse" ? { tlqAssign: "nearest" as const } : {}),
    gptq: o.gptq ?? false,
    ...(o.abitsOverride?.length ? { abitsOverride: o.abitsOverride.map((v) => ({ ...v })) } : {}),
    ...(o.center ? { center: o.center } : {}),
    ...(o.actGroup ? { actGroup: o.actGroup } : {}),
    ...(o.actAsym ? { actAsym: true } : {}),
    ...(o.cfgDelta ? { cfgDelta: true } : {}),
    ...(o.lowRank ? { lowRank: o.lowRank } : {}),
    ...(o.lowRankOverride?.length
      ? { lowRankOverride: o.lowRankOverride.map((v) => ({ ...v })) }
      : {}),
    ...(branches ? { lowRankFit: o.lowRankFit ?? defaultLowRankFit(o.gptq ?? false) } : {}),
    keepFp: o.keepFp ?? [...defaultKeepFp(className)],
  };
}
