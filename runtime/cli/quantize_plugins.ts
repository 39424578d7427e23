/**
 * `quantize`'s plugin options checked against the plugin registry before any work, so a
 * mistake is a usage error naming the flag and what it takes: --quantizer, --wbits (the
 * quantizer's bits), --rotation, --attention (and --density and --attn-bits, which only a
 * planning attention takes), and --model (a model folder).
 *
 * @module
 */
import { createDefaultRegistry } from "../builtins.ts";
import type { PluginRegistry } from "../registry.ts";
import { choiceOption, numberOption, UsageError } from "./common.ts";

/** The raw values of the options checked here. */
export interface PluginArgs {
  quantizer?: string;
  wbits?: string;
  rotation?: string;
  attention?: string;
  density?: string;
  "attn-bits"?: string;
}

/** The checked plugin choices. */
export interface PluginChoices {
  quantizer: string;
  wbits: number;
  rotation: string;
  attention: string;
}

/**
 * Checks --quantizer, --wbits, --rotation and --attention against `registry` (rotations
 * and attentions that can plan a layer), and that --density and --attn-bits come with an
 * attention that takes them.
 */
export function checkPluginArgs(
  v: PluginArgs,
  registry: PluginRegistry = createDefaultRegistry(),
): PluginChoices {
  const quantizers = registry.list("quantizer").map((p) => p.name);
  const quantizer = choiceOption("quantizer", v.quantizer, quantizers, quantizers[0]);
  const q = registry.get("quantizer", quantizer);
  const wbits = numberOption("wbits", v.wbits, 4, { min: 1, max: 16, integer: true });
  if (!q.bits.includes(wbits)) {
    throw new UsageError(
      `--wbits must be one of ${q.bits.join(", ")} for --quantizer ${quantizer}, got ${wbits}`,
    );
  }
  // "none" is always there (the registry holds it too, as a plugin that plans no rotation).
  const rotations = [
    ...new Set([
      "none",
      ...registry.list("rotation").filter((p) => p.planLayer).map((p) => p.name),
    ]),
  ];
  const rotation = choiceOption("rotation", v.rotation, rotations, "none");
  const attentions = registry.list("attention").filter((p) => p.name === "dense" || p.plan);
  const attention = choiceOption("attention", v.attention, attentions.map((p) => p.name), "dense");
  const planning = attentions.filter((p) => p.plan).map((p) => p.name);
  const given = (["density", "attn-bits"] as const).filter((k) => v[k] !== undefined);
  if (given.length && !planning.includes(attention)) {
    throw new UsageError(
      `${given.map((k) => `--${k}`).join(" and ")} appl${given.length > 1 ? "y" : "ies"} to ` +
        `--attention ${planning.join(" or ")}, not ${attention}`,
    );
  }
  return { quantizer, wbits, rotation, attention };
}

/** Checks that --model, when given, is a model folder (not a file, not missing). */
export async function checkModelFolder(path: string | undefined): Promise<void> {
  if (path === undefined) return;
  const st = await Deno.stat(path).catch(() => undefined);
  if (!st) throw new UsageError(`--model must be a model folder; ${path} does not exist`);
  if (!st.isDirectory) {
    throw new UsageError(
      `--model must be a model folder (diffusers layout: model_index.json, transformer/…), ` +
        `not the file ${path}`,
    );
  }
}
