/**
 * The plugin matrix of `deno task ablation`: which settings (quantizer × weight bits ×
 * activation bits × rotation × attention × density × attention bits) run on which model,
 * prompts, seeds and sampler settings. A matrix file is JSON:
 *
 *     {
 *       "model": "models/emoji-s",        // default: the bundled model
 *       "prompts": 4,                      // the first N of bench/prompts/emoji_fidelity.txt
 *                                          // that are no calibration prompt, or a list
 *       "seeds": [0], "steps": 20, "batch": 4, "guidance": 3.5, // default: the model's
 *       "calibration": { "prompts": […], "steps": 20 },   // default: each plugin's own
 *       "rows": [ { "quantizer": "uniform", "wbits": 8, "abits": 8 }, … ],
 *       "grid": { "quantizer": ["tlq", "uniform"], "wbits": [3, 4], "abits": [8] }
 *     }
 *
 * `rows` lists settings one by one; `grid` adds the cartesian product of its lists. A
 * field left out of a row takes its default: quantizer "fp32", rotation "none", attention
 * "dense", the rest null. The FP32 dense row is always first: every other row is scored
 * against its images.
 *
 * @module
 */
import { parsePromptList } from "../runtime/eval/eval.ts";
import { CALIBRATION_PROMPTS } from "../runtime/quant/calibrate.ts";
import { modelSamplingDefaults } from "../runtime/quant/calibration_run.ts";
import { PARO_CALIBRATION_PROMPTS } from "../plugins/attention/paro.ts";
import {
  type AblationSetting,
  fail,
  intField,
  parseSetting,
  REFERENCE,
  settingKey,
} from "./ablation_setting.ts";
export { type AblationSetting, REFERENCE, settingKey, settingLabel } from "./ablation_setting.ts";

/** A parsed matrix: what every row shares, and the rows. */
export interface AblationMatrix {
  model: string;
  prompts: string[];
  seeds: number[];
  steps: number;
  batch: number;
  guidance: number;
  /** Calibration prompts and steps of the rotations and PARO (default: the plugins' own). */
  calibration: { prompts?: string[]; steps?: number };
  settings: AblationSetting[];
}

/** The committed default matrix (every plugin at least once; the issues' target rows). */
export const DEFAULT_MATRIX_FILE: string =
  new URL("./matrices/default.json", import.meta.url).pathname;

/** The cartesian product of a grid's lists, as settings. */
function expandGrid(file: string, raw: unknown): AblationSetting[] {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    fail(file, "grid", "must be an object of lists");
  }
  let combos: Record<string, unknown>[] = [{}];
  for (const [k, vals] of Object.entries(raw as Record<string, unknown>)) {
    if (!Array.isArray(vals) || vals.length === 0) fail(file, `grid.${k}`, "must be a list");
    combos = combos.flatMap((c) => vals.map((v) => ({ ...c, [k]: v })));
  }
  return combos.map((c, i) => parseSetting(file, `grid[${i}]`, c));
}

/** The evaluation prompts: the prompt file minus every calibration prompt. */
export async function evalPrompts(): Promise<string[]> {
  const all = parsePromptList(
    await Deno.readTextFile(new URL("./prompts/emoji_fidelity.txt", import.meta.url)),
  );
  const calib = new Set([...CALIBRATION_PROMPTS, ...PARO_CALIBRATION_PROMPTS]);
  return all.filter((p) => !calib.has(p));
}

/**
 * Parses and validates a matrix (errors name the file and the field). `model` replaces the
 * matrix's model (ablation --model), whose defaults then fill steps and guidance.
 */
export async function parseMatrix(
  raw: unknown,
  file: string,
  model?: string,
): Promise<AblationMatrix> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    fail(file, "the matrix", "must be a JSON object");
  }
  const m = raw as Record<string, unknown>;
  const known = [
    "model",
    "prompts",
    "seeds",
    "steps",
    "batch",
    "guidance",
    "calibration",
    "rows",
    "grid",
  ];
  for (const k of Object.keys(m)) {
    if (!known.includes(k) && !k.startsWith("_")) {
      fail(file, k, `is not a matrix field (known: ${known.join(", ")})`);
    }
  }
  if (m.model !== undefined && (typeof m.model !== "string" || !m.model)) {
    fail(file, "model", "must be a path");
  }
  let prompts: string[];
  if (Array.isArray(m.prompts)) {
    if (!m.prompts.length || m.prompts.some((p) => typeof p !== "string" || !p.trim())) {
      fail(file, "prompts", "must be a non-empty list of prompts");
    }
    prompts = m.prompts as string[];
  } else {
    const all = await evalPrompts();
    const n = m.prompts === undefined ? 4 : intField(file, "prompts", m.prompts, 1, all.length);
    prompts = all.slice(0, n);
  }
  const seeds = m.seeds === undefined ? [0] : m.seeds;
  if (!Array.isArray(seeds) || !seeds.length) fail(file, "seeds", "must be a non-empty list");
  seeds.forEach((s, i) => intField(file, `seeds[${i}]`, s, 0, 2 ** 32 - 1));
  const modelPath = model ?? (m.model as string | undefined) ?? "models/emoji-s";
  const own = await modelSamplingDefaults(modelPath); // steps and guidance left out: the model's
  const guidance = m.guidance ?? own.guidance;
  if (typeof guidance !== "number" || !(guidance >= 0 && guidance <= 30)) {
    fail(file, "guidance", `must be a number in [0, 30], got ${JSON.stringify(guidance)}`);
  }
  const calibration: AblationMatrix["calibration"] = {};
  if (m.calibration !== undefined) {
    const c = m.calibration as Record<string, unknown>;
    if (typeof c !== "object" || c === null) fail(file, "calibration", "must be an object");
    if (c.prompts !== undefined) {
      if (
        !Array.isArray(c.prompts) || !c.prompts.length ||
        c.prompts.some((p) => typeof p !== "string")
      ) {
        fail(file, "calibration.prompts", "must be a non-empty list of prompts");
      }
      calibration.prompts = c.prompts as string[];
    }
    if (c.steps !== undefined) {
      calibration.steps = intField(file, "calibration.steps", c.steps, 1, 1000);
    }
  }
  const settings: AblationSetting[] = [REFERENCE];
  if (m.rows !== undefined) {
    if (!Array.isArray(m.rows)) fail(file, "rows", "must be a list of settings");
    m.rows.forEach((r, i) => settings.push(parseSetting(file, `rows[${i}]`, r)));
  }
  if (m.grid !== undefined) settings.push(...expandGrid(file, m.grid));
  const seen = new Set<string>();
  const unique = settings.filter((s) => !seen.has(settingKey(s)) && seen.add(settingKey(s)));
  return {
    model: modelPath,
    prompts,
    seeds: seeds as number[],
    steps: m.steps === undefined ? own.steps : intField(file, "steps", m.steps, 1, 1000),
    batch: m.batch === undefined ? 4 : intField(file, "batch", m.batch, 1, 256),
    guidance,
    calibration,
    settings: unique,
  };
}

/** Reads and parses a matrix file (`model`: see {@linkcode parseMatrix}). */
export async function readMatrix(path: string, model?: string): Promise<AblationMatrix> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new RangeError(`${path}: cannot read the matrix (${(e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new RangeError(`${path}: invalid JSON (${(e as Error).message})`);
  }
  return await parseMatrix(raw, path, model);
}
