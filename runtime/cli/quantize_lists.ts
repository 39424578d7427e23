/**
 * `quantize`'s per-layer list flags, `PATTERN=VALUE,…` (`*` matches any run of characters,
 * the first matching pattern wins): `--abits-override` and `--low-rank-override`.
 *
 * @module
 */
import { LOW_RANK_MAX } from "../ops/low_rank.ts";
import type { AbitsOverride, LowRankOverride } from "../quant/plan.ts";
import { ABITS } from "../quant/qlinear.ts";
import { UsageError } from "./common.ts";

/**
 * The PATTERN=INTEGER entries of `list` for `flag` (`form`, e.g. "PATTERN=R"), each value
 * checked by `ok` (`rule` says what it takes).
 */
function parseList(
  flag: string,
  list: string,
  form: string,
  rule: string,
  ok: (v: number) => boolean,
): { pattern: string; value: number }[] {
  const out: { pattern: string; value: number }[] = [];
  for (const item of list.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^(.+)=(\d+)$/.exec(item);
    const value = m ? Number(m[2]) : NaN;
    if (!m || !ok(value)) throw new UsageError(`${flag}: "${item}" is not ${form} with ${rule}`);
    out.push({ pattern: m[1].trim(), value });
  }
  if (!out.length) throw new UsageError(`${flag}: no ${form} given`);
  return out;
}

/** `--abits-override "PATTERN=BITS,…"` as plan entries (undefined when not given). */
export function parseAbitsOverride(list: string | undefined): AbitsOverride[] | undefined {
  if (list === undefined) return undefined;
  const rule = `BITS one of ${ABITS.join(", ")}`;
  const ok = (v: number) => (ABITS as readonly number[]).includes(v);
  return parseList("--abits-override", list, "PATTERN=BITS", rule, ok)
    .map(({ pattern, value }) => ({ pattern, abits: value }));
}

/** `--low-rank-override "PATTERN=R,…"` as plan entries (undefined when not given; R 0: none). */
export function parseLowRankOverride(list: string | undefined): LowRankOverride[] | undefined {
  if (list === undefined) return undefined;
  const rule = `R an integer from 0 to ${LOW_RANK_MAX}`;
  return parseList("--low-rank-override", list, "PATTERN=R", rule, (v) => v <= LOW_RANK_MAX)
    .map(({ pattern, value }) => ({ pattern, rank: value }));
}
