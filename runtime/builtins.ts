/**
 * The built-in plugins, registered explicitly (ARCHITECTURE.md: no folder scanning).
 * Each plugin family adds its descriptors here.
 *
 * @module
 */
import { densePlugin } from "../plugins/attention/dense.ts";
import { paroPlugin } from "../plugins/attention/paro.ts";
import { fluxPlugin } from "../plugins/models/flux.ts";
import { pixartPlugin } from "../plugins/models/pixart.ts";
import { ROTATION_PLUGINS } from "./quant/rotation_plan.ts";
import { BUILTIN_QUANTIZERS } from "../plugins/quantizers/builtin.ts";
import { PluginRegistry } from "./registry.ts";

/** A registry holding every built-in plugin. */
export function createDefaultRegistry(): PluginRegistry {
  const r = new PluginRegistry();
  r.register(pixartPlugin);
  for (const p of Object.values(ROTATION_PLUGINS)) r.register(p);
  r.register(fluxPlugin);
  for (const q of Object.values(BUILTIN_QUANTIZERS)) r.register(q);
  r.register(densePlugin).register(paroPlugin);
  return r;
}
