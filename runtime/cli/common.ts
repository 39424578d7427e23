/**
 * Shared pieces of the command line: argument parsing with clear errors, the JSON
 * last line, and a progress bar on stderr.
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { dirname, resolve } from "node:path";

/** A command-line mistake: printed with the usage, exit code 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The parsed values of options `T`: booleans for flags, strings otherwise. */
export type CliValues<T extends ParseArgsOptionsConfig> = {
  [K in keyof T]?: T[K]["type"] extends "boolean" ? boolean : string;
};

/** Parses `args` strictly; unknown options and missing values become UsageErrors. */
export function parseCli<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  allowPositionals = false,
): { values: CliValues<T>; positionals: string[] } {
  try {
    const r = parseArgs({
      args: joinNegativeValues(args, options),
      options,
      strict: true,
      allowPositionals,
    });
    return r as unknown as ReturnType<typeof parseCli<T>>;
  } catch (e) {
    throw new UsageError((e as Error).message.split("\n")[0]);
  }
}

/** A token that reads as a negative number ("-1", "-0.5", "-1e3", "-.5", "-Infinity"). */
const NEGATIVE_NUMBER = /^-(\d|\.\d|Infinity$)/;

/**
 * `--name -1` as `--name=-1` where `--name` takes a value (a short `-n -1` as its long
 * `--name=-1`: parseArgs reads no `=` after a short option): node:util's parseArgs would
 * otherwise call "-1" an ambiguous option, so the value never reached its range check.
 */
export function joinNegativeValues(args: string[], options: ParseArgsOptionsConfig): string[] {
  // The long option a value-taking token names, or undefined.
  const valueOption = (tok: string): string | undefined => {
    if (tok.startsWith("--")) {
      return options[tok.slice(2)]?.type === "string" ? tok : undefined;
    }
    if (!/^-[^-]$/.test(tok)) return undefined;
    const long = Object.entries(options).find(([, o]) => o.short === tok[1] && o.type === "string");
    return long ? `--${long[0]}` : undefined;
  };
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const tok = args[i];
    if (tok === "--") {
      out.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    const long = next !== undefined && NEGATIVE_NUMBER.test(next) ? valueOption(tok) : undefined;
    if (long) {
      out.push(`${long}=${next}`);
      i++;
    } else {
      out.push(tok);
    }
  }
  return out;
}

/** The accepted values of a number option. */
export interface NumberRange {
  /** Default −∞. */
  min?: number;
  /** Default +∞. */
  max?: number;
  /** Default false. */
  integer?: boolean;
}

/** Parses a number option, checking it is finite and within [min, max] (and an integer). */
export function numberOption(
  name: string,
  raw: string | undefined,
  def: number,
  { min = -Infinity, max = Infinity, integer = false }: NumberRange = {},
): number {
  if (raw === undefined) return def;
  const v = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"}, got "${raw}"`);
  }
  if (v < min || v > max) throw new UsageError(`--${name} must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** Checks that an option's value is one of `choices`. */
export function choiceOption<C extends string>(
  name: string,
  raw: string | undefined,
  choices: readonly C[],
  def: C,
): C {
  if (raw === undefined) return def;
  if (!choices.includes(raw as C)) {
    throw new UsageError(`--${name} must be one of ${choices.join(", ")}, got "${raw}"`);
  }
  return raw as C;
}

/** The options every command takes besides its own. */
const STANDARD_OPTIONS = {
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The names of the string-valued options of `T`. */
type StringOption<T extends ParseArgsOptionsConfig> =
  & { [K in keyof T]: T[K]["type"] extends "string" ? K : never }[keyof T]
  & string;

/** A command's parsed options, read by name with their checks. */
export class CliOptions<T extends ParseArgsOptionsConfig> {
  /** The raw values. */
  readonly values: CliValues<T>;

  /** Wraps parsed values. */
  constructor(values: CliValues<T>) {
    this.values = values;
  }

  #raw(name: StringOption<T>): string | undefined {
    return this.values[name] as string | undefined;
  }

  /** `--name` as a number in `range`, `def` when absent (see {@linkcode numberOption}). */
  number(name: StringOption<T>, def: number, range?: NumberRange): number {
    return numberOption(name, this.#raw(name), def, range);
  }

  /** `--name` as a number in `range`, undefined when absent. */
  optionalNumber(name: StringOption<T>, range?: NumberRange): number | undefined {
    const raw = this.#raw(name);
    return raw === undefined ? undefined : numberOption(name, raw, 0, range);
  }

  /** `--name` as one of `choices`, `def` when absent (see {@linkcode choiceOption}). */
  choice<C extends string>(name: StringOption<T>, choices: readonly C[], def: C): C {
    return choiceOption(name, this.#raw(name), choices, def);
  }

  /** `--name` as one of `choices`, undefined when absent. */
  optionalChoice<C extends string>(name: StringOption<T>, choices: readonly C[]): C | undefined {
    const raw = this.#raw(name);
    return raw === undefined ? undefined : choiceOption(name, raw, choices, raw as C);
  }
}

/**
 * Parses a command's options plus --json and --help (-h). With --help it prints `usage` to
 * stderr and returns undefined: the command then returns exit code 0.
 */
export function parseCommand<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  usage: string,
): CliOptions<T & typeof STANDARD_OPTIONS> | undefined {
  const { values } = parseCli(args, { ...options, ...STANDARD_OPTIONS });
  if (values.help) {
    info(usage);
    return undefined;
  }
  return new CliOptions(values);
}

/** `path`'s file info, or undefined where it cannot be read (absent, a file on the way…). */
async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  return await Deno.stat(path).catch(() => undefined);
}

/**
 * Checks, before any work, that an output file can be written at `path`: its folder exists,
 * it is not a folder itself, and it is not there already unless `force` (then it is
 * overwritten). `flag` names the option that chose it.
 */
export async function checkWritable(path: string, force: boolean, flag: string): Promise<void> {
  await checkNoOverwrite(path, force, flag);
  const parent = dirname(resolve(path));
  const pst = await statOrUndefined(parent);
  if (!pst) throw new UsageError(`${flag} ${path}: the folder ${parent} does not exist`);
  if (!pst.isDirectory) throw new UsageError(`${flag} ${path}: ${parent} is not a folder`);
}

/**
 * Refuses an output file `path` that is a folder, or that exists unless `force`; its folder
 * is not checked (see {@linkcode checkWritable}).
 */
export async function checkNoOverwrite(path: string, force: boolean, flag: string): Promise<void> {
  const st = await statOrUndefined(path);
  if (st?.isDirectory) throw new UsageError(`${flag} ${path} is a folder, not a file`);
  if (st && !force) {
    throw new UsageError(`${path} exists; pass --force to overwrite it or choose another ${flag}`);
  }
}

/**
 * Checks, before any work, that an output folder can be made at `path`: it is a folder or
 * absent, and the nearest part of it that exists is a folder (the rest is created).
 */
export async function checkOutputFolder(path: string, flag: string): Promise<void> {
  let p = resolve(path);
  for (;;) {
    const st = await statOrUndefined(p);
    if (st) {
      if (st.isDirectory) return;
      throw new UsageError(`${flag} ${path}: ${p} is not a folder`);
    }
    const up = dirname(p);
    if (up === p) return;
    p = up;
  }
}

/**
 * Checks that no two outputs of a run name the same file (`[flag, path]` pairs; paths are
 * compared resolved).
 */
export function checkDistinctOutputs(outputs: readonly (readonly [string, string])[]): void {
  const seen = new Map<string, string>();
  for (const [flag, path] of outputs) {
    const key = resolve(path);
    const other = seen.get(key);
    if (other !== undefined) {
      const who = other === flag ? `${flag} names` : `${other} and ${flag} both name`;
      throw new UsageError(`${who} ${path}: give each output its own file`);
    }
    seen.set(key, flag);
  }
}

/** Prints one JSON object as the last line of stdout. */
export function emitJson(obj: unknown): void {
  console.log(JSON.stringify(obj));
}

/** Writes human text to stderr (stdout is kept for the JSON line). */
export function info(msg: string): void {
  console.error(msg);
}

/** A progress bar on stderr: step, it/s and ETA. Redraws in place on a TTY. */
export class ProgressBar {
  #label: string;
  #total: number;
  #start = performance.now();
  #tty = Deno.stderr.isTerminal();
  #enc = new TextEncoder();

  /** Starts a bar of `total` steps. */
  constructor(label: string, total: number) {
    this.#label = label;
    this.#total = total;
  }

  /** Shows that `done` steps are complete. */
  update(done: number): void {
    const s = (performance.now() - this.#start) / 1000;
    const rate = done / Math.max(s, 1e-9);
    const eta = rate > 0 ? (this.#total - done) / rate : 0;
    const width = 24;
    const fill = Math.min(
      width,
      Math.max(0, Math.round((done / Math.max(1, this.#total)) * width)),
    );
    const line = `${this.#label} [${"#".repeat(fill)}${".".repeat(width - fill)}] ` +
      `${done}/${this.#total} ${rate.toFixed(2)} it/s ETA ${eta.toFixed(1)}s`;
    if (this.#tty) Deno.stderr.writeSync(this.#enc.encode(`\r${line}`));
    else if (done === this.#total || done === 1 || done % 10 === 0) console.error(line);
  }

  /** Ends the bar (newline on a TTY). */
  done(): void {
    if (this.#tty) Deno.stderr.writeSync(this.#enc.encode("\n"));
  }
}

/** A calibration run's progress report: after every sampler step (`step` counts from 1). */
export interface CalibrationStep {
  prompt: number;
  prompts: number;
  step: number;
  steps: number;
}

/** A progress bar over a calibration run's prompts × steps, made at the first report. */
export class CalibrationProgress {
  #label: string;
  #bar: ProgressBar | undefined;

  /** A bar labelled `label`. */
  constructor(label: string) {
    this.#label = label;
  }

  /** Shows one report (pass it as the run's onProgress / onCalibration). */
  update(p: CalibrationStep): void {
    this.#bar ??= new ProgressBar(this.#label, p.prompts * p.steps);
    this.#bar.update(p.prompt * p.steps + p.step);
  }

  /** Ends the bar, if one was shown. */
  done(): void {
    this.#bar?.done();
    this.#bar = undefined;
  }
}
