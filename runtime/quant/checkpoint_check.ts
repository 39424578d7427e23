/**
 * Checks a model folder's transformer checkpoint against its config before quantize does
 * any work: every tensor the architecture needs is there, float, and of the shape its
 * config.json implies — so a mismatch is named here, not when the artifact is loaded.
 *
 * @module
 */
import { fluxWeightShapes, parseFluxConfig } from "../../plugins/models/flux_config.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../../plugins/models/pixart_config.ts";
import { openCheckpoint } from "../io/safetensors_index.ts";
import { WeightLoader } from "../model/weights.ts";

/**
 * Validates the checkpoint in `tdir` against `cfg` (its parsed config.json at `cfgPath`).
 *
 * @throws {CheckpointError} naming the file and the tensor that is missing or mis-shaped,
 * or the config field that is invalid.
 */
export async function checkCheckpoint(
  tdir: string,
  cfg: unknown,
  cfgPath: string,
  family: string | undefined,
): Promise<void> {
  const expected = family === "flux"
    ? fluxWeightShapes(parseFluxConfig(cfg, cfgPath))
    : pixartWeightShapes(parsePixArtConfig(cfg, cfgPath));
  const src = await openCheckpoint(tdir);
  try {
    new WeightLoader(src, expected); // its constructor checks every expected tensor
  } finally {
    src.close();
  }
}
