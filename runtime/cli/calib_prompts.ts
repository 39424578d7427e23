/**
 * The calibration prompts `quantize --calib-file FILE` and `--calib-prompts N` ask for: a
 * prompt file's (one a line), the first N of it, or the first N built in — past the 10 built
 * in, of the bundled model's longer list, which starts with them.
 *
 * @module
 */
import { CALIBRATION_PROMPTS } from "../quant/calibrate.ts";
import { CAPTION_CALIBRATION_PROMPTS } from "../quant/calibration_run.ts";
import { parsePromptList } from "../eval/eval.ts";
import { UsageError } from "./common.ts";

/**
 * The bundled model's longer calibration list: the 10 built-in prompts, then emoji names
 * spread over the dataset's categories, none an evaluation prompt.
 */
export const MORE_CALIBRATION_PROMPTS_FILE: string =
  new URL("../../bench/prompts/calibration_320.txt", import.meta.url).pathname;

/** A prompt file's prompts (one a line; blank lines and # comments skipped). */
export async function readCalibrationPrompts(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UsageError(`--calib-file: no such file ${file}`);
    }
    throw new UsageError(`--calib-file ${file}: ${(e as Error).message}`);
  }
  const prompts = parsePromptList(text);
  if (!prompts.length) throw new UsageError(`--calib-file ${file}: no prompt in it`);
  return prompts;
}

/**
 * The prompts of `--calib-file` (`file`) and `--calib-prompts` (`n`); undefined when neither
 * is given (each plugin's own list). `captions`: the model calibrates through a real
 * checkpoint's text encoders, so `n` counts CAPTION_CALIBRATION_PROMPTS.
 */
export async function calibrationPrompts(
  file: string | undefined,
  n: number | undefined,
  captions = false,
): Promise<string[] | undefined> {
  if (file === undefined && n === undefined) return undefined;
  if (file === undefined && captions) {
    const all = CAPTION_CALIBRATION_PROMPTS;
    if (n! > all.length) {
      throw new UsageError(
        `--calib-prompts ${n}: ${all.length} captions are built in for a real checkpoint's ` +
          "text encoders; give --calib-file for more",
      );
    }
    return all.slice(0, n);
  }
  const from = file ??
    (n! > CALIBRATION_PROMPTS.length ? MORE_CALIBRATION_PROMPTS_FILE : undefined);
  const list = from === undefined ? [...CALIBRATION_PROMPTS] : await readCalibrationPrompts(from);
  if (n !== undefined && n > list.length) {
    throw new UsageError(`--calib-prompts ${n}: ${from} has ${list.length} prompts`);
  }
  return list.slice(0, n);
}
