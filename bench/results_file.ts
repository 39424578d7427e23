/**
 * Results files, as shared/design/BENCHMARKS.md "Results format" describes:
 * `bench/results/<device-slug>/<date>_<what>.{json,md}` — their types, header (device, commit,
 * date, command), markdown table and writer. Every bench writes through these.
 *
 * @module
 */
import { dirname } from "node:path";

/** One result row of a results file. */
export interface BenchResult {
  /** lower_snake_case name, e.g. "gemm_f32_4096". */
  name: string;
  /** The headline figure (TFLOP/s, ms, …). */
  value: number;
  /** Unit of `value`. */
  unit: string;
  /** Median time of one unit of work (a sample's time / reps). */
  median_ms: number;
  /** Fastest sample's time / reps. */
  min_ms: number;
  /** A second figure (e.g. TFLOP/s beside ms). */
  value2?: number;
  /** Units of work per timed sample (see TimingOptions.minSampleMs). */
  reps?: number;
  /** Unit of `value2`. */
  unit2?: string;
  /** Remarks: the kernel version, a failed check, a skipped peer… */
  note?: string;
}

/** A results file, as BENCHMARKS.md "Results format" describes. */
export interface ResultsFile {
  /** The adapter's description, e.g. "NVIDIA H100 80GB HBM3". */
  device: string;
  /** The WebGPU backend, e.g. "vulkan". */
  adapter: string;
  /** Deno's version. */
  deno: string;
  /** `git rev-parse --short HEAD` (or WEBDIT_COMMIT where the tree has no .git). */
  commit: string;
  /** YYYY-MM-DD (UTC). */
  date: string;
  /** The command that produced the file. */
  command: string;
  /** The GPU driver (WEBDIT_GPU_DRIVER, else nvidia-smi's on NVIDIA devices: gpuDriver). */
  driver?: string;
  /** The rows. */
  results: BenchResult[];
  /** Anything else worth keeping (adapter info, options). */
  extra?: Record<string, unknown>;
}

/** A row of a figure that is not a time (a quality figure: dB, a share, an error); no timing. */
export function figureRow(name: string, value: number, unit: string, note?: string): BenchResult {
  return { name, value, unit, median_ms: 0, min_ms: 0, ...(note !== undefined ? { note } : {}) };
}

/** A row of one timed run in seconds (a host-side job, not a kernel: no samples). */
export function secondsRow(name: string, s: number, note: string): BenchResult {
  return {
    name,
    value: Number(s.toFixed(2)),
    unit: "s",
    median_ms: s * 1000,
    min_ms: s * 1000,
    note,
  };
}

/** A row of one measured long host-side job in minutes; its times in ms as every row's. */
export function minutesRow(name: string, s: number, note: string): BenchResult {
  return { ...secondsRow(name, s / 60, note), unit: "min", median_ms: s * 1000, min_ms: s * 1000 };
}

/**
 * A row of an extrapolated figure, not a measurement: no timing of its own (median_ms and
 * min_ms 0, as {@linkcode figureRow}: the format has no null), its note "estimate from
 * <from>; not measured".
 */
export function estimateRow(name: string, value: number, unit: string, from: string): BenchResult {
  return figureRow(name, value, unit, `estimate from ${from}; not measured (no median/min)`);
}

/**
 * The results-folder name of an adapter: "nvidia-h100" for "NVIDIA H100 80GB HBM3",
 * "cpu-lavapipe" for a fallback llvmpipe/lavapipe adapter, else a slug of the description.
 */
export function deviceSlug(description: string, fallback = false): string {
  const d = description.toLowerCase();
  if (fallback || d.includes("llvmpipe") || d.includes("lavapipe")) {
    return d.includes("swiftshader") ? "cpu-swiftshader" : "cpu-lavapipe";
  }
  const m = d.match(/\b(nvidia|amd|intel|apple)\b.*?\b([a-z]{1,3}\d{2,4}[a-z]?)\b/);
  if (m) return `${m[1]}-${m[2]}`;
  return d.replace(/\(.*?\)/g, "").trim().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") ||
    "unknown";
}

/** The short commit: WEBDIT_COMMIT, else `git rev-parse --short HEAD`, else "unknown". */
export async function gitCommit(): Promise<string> {
  const env = Deno.env.get("WEBDIT_COMMIT");
  if (env) return env;
  try {
    const out = await new Deno.Command("git", {
      args: ["rev-parse", "--short", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).output();
    if (out.success) return new TextDecoder().decode(out.stdout).trim();
  } catch { /* no git here (e.g. the GPU machine's copy of the tree) */ }
  return "unknown";
}

/** Today as YYYY-MM-DD (UTC), or WEBDIT_BENCH_DATE. */
export function today(): string {
  return Deno.env.get("WEBDIT_BENCH_DATE") ?? new Date().toISOString().slice(0, 10);
}

/** The WebGPU backend Deno uses here: DENO_WEBGPU_BACKEND, else the platform's default. */
export function backendName(): string {
  const env = Deno.env.get("DENO_WEBGPU_BACKEND");
  if (env) return env;
  return Deno.build.os === "darwin" ? "metal" : Deno.build.os === "windows" ? "dx12" : "vulkan";
}

/**
 * The driver version `nvidia-smi` reports (its first GPU's), or undefined where the command is
 * missing, not allowed (no --allow-run) or fails.
 */
export function nvidiaSmiDriver(): string | undefined {
  try {
    const out = new Deno.Command("nvidia-smi", {
      args: ["--query-gpu=driver_version", "--format=csv,noheader"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (!out.success) return undefined;
    return new TextDecoder().decode(out.stdout).trim().split("\n")[0].trim() || undefined;
  } catch {
    return undefined;
  }
}

let smiDriver: { v: string | undefined } | undefined;

/** Whether `device` is the host CPU ("host CPU (<model>)": a run with no GPU in it). */
export function isHostCpu(device: string): boolean {
  return /^host CPU\b/.test(device);
}

/**
 * The GPU driver of a run on `device`: none on the host CPU ({@linkcode isHostCpu}: its run
 * used no GPU, whatever the machine has), else WEBDIT_GPU_DRIVER where set (bench/gpu_all.sh
 * sets it), else on an NVIDIA device "NVIDIA <version>" from `nvidia-smi` as gpu_all.sh writes
 * it (asked once per process), else undefined. `smi` replaces the nvidia-smi query (tests).
 */
export function gpuDriver(device: string, smi?: () => string | undefined): string | undefined {
  if (isHostCpu(device)) return undefined;
  const env = Deno.env.get("WEBDIT_GPU_DRIVER");
  if (env) return env;
  if (!/nvidia/i.test(device)) return undefined;
  let v: string | undefined;
  if (smi) v = smi();
  else v = (smiDriver ??= { v: nvidiaSmiDriver() }).v;
  return v ? `NVIDIA ${v}` : undefined;
}

/**
 * The fields every results file starts with: device, backend, Deno, commit, date, command, and
 * the GPU driver ({@linkcode gpuDriver}) where known.
 */
export type ResultsHeader = Pick<
  ResultsFile,
  "device" | "adapter" | "deno" | "commit" | "date" | "command" | "driver"
>;

/** The results-file header of a run on `device` at `commit` (gitCommit()), made by `command`. */
export function resultsHeader(
  device: string,
  commit: string,
  command: string = commandLine(),
): ResultsHeader {
  const driver = gpuDriver(device);
  return {
    device,
    adapter: backendName(),
    deno: Deno.version.deno,
    commit,
    date: today(),
    command,
    ...(driver ? { driver } : {}),
  };
}

/** The command line of this process, for the results file (WEBDIT_BENCH_COMMAND wins). */
export function commandLine(): string {
  // A filtered run says so: its file holds only the matching cases.
  const filter = Deno.env.get("WEBDIT_BENCH_FILTER");
  const pre = filter ? `WEBDIT_BENCH_FILTER='${filter}' ` : "";
  const env = Deno.env.get("WEBDIT_BENCH_COMMAND");
  if (env) return pre + env;
  const main = Deno.mainModule.startsWith("file:")
    ? relativeToCwd(new URL(Deno.mainModule).pathname)
    : Deno.mainModule;
  return `${pre}deno bench -A --no-check ${main}`;
}

function relativeToCwd(path: string): string {
  const cwd = Deno.cwd().replace(/\/$/, "") + "/";
  return path.startsWith(cwd) ? path.slice(cwd.length) : path;
}

/** A value formatted for a table: 3 significant digits, no exponent for usual sizes. */
export function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return v === undefined ? "" : String(v);
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

/** The markdown table of a results file (the `.md` beside the `.json`). */
export function resultsMarkdown(file: ResultsFile): string {
  const lines = [
    `# ${file.date} — ${file.device}`,
    "",
    `adapter: ${file.adapter}${
      file.driver ? ` · driver ${file.driver}` : ""
    } · deno ${file.deno} · commit ${file.commit}`,
    "",
    `command: \`${file.command}\``,
    "",
    "| name | value | unit | median ms | min ms | note |",
    "| --- | ---: | --- | ---: | ---: | --- |",
  ];
  for (const r of file.results) {
    const v2 = r.value2 !== undefined ? ` (${fmt(r.value2)} ${r.unit2 ?? ""})` : "";
    lines.push(
      `| ${r.name} | ${fmt(r.value)}${v2} | ${r.unit} | ${fmt(r.median_ms)} | ${fmt(r.min_ms)} | ${
        r.note ?? ""
      } |`,
    );
  }
  const failed = (file.extra?.failed ?? []) as { name: string; note: string }[];
  for (const f of failed) lines.push(`| ${f.name} | — | | | | ${f.note} |`);
  return lines.join("\n") + "\n";
}

/** Where {@linkcode writeResults} writes: bench/results beside this file, or WEBDIT_RESULTS_DIR. */
export function resultsRoot(): string {
  const env = Deno.env.get("WEBDIT_RESULTS_DIR");
  if (env) return env;
  return new URL("./results/", import.meta.url).pathname;
}

/**
 * Any results file as it is written: the header, named `results` rows where it has them (an
 * ablation file's `rows` beside them), and `extra`.
 */
export type ResultsLike = ResultsHeader & {
  results?: BenchResult[];
  extra?: Record<string, unknown>;
};

/**
 * `file` as the results format stores it. JSON has no NaN (it would be a null the format
 * can't read): a row whose value is not a number (a case that failed its check) goes to
 * `extra.failed` with its note, and a non-finite value2 (its peer missing, a zero time) is
 * dropped, the row's note saying so ({@linkcode withoutBadValue2}).
 */
export function storedResults<F extends ResultsLike>(file: F): F {
  if (!file.results) return file;
  const failed = file.results.filter((r) => !Number.isFinite(r.value));
  if (failed.length > 0) {
    file = {
      ...file,
      results: file.results.filter((r) => Number.isFinite(r.value)),
      extra: {
        ...file.extra,
        failed: failed.map((r) => ({ name: r.name, unit: r.unit, note: r.note ?? "failed" })),
      },
    };
  }
  if (file.results!.some((r) => r.value2 !== undefined && !Number.isFinite(r.value2))) {
    file = { ...file, results: file.results!.map(withoutBadValue2) };
  }
  return file;
}

/**
 * Writes `<base>.json` ({@linkcode storedResults} of `file`) and `<base>.md` (`markdown` of
 * the stored file); returns both paths. Files of the same name are replaced.
 */
export async function writeResultsAt<F extends ResultsLike>(
  base: string,
  file: F,
  markdown: (stored: F) => string,
): Promise<{ json: string; md: string }> {
  const stored = storedResults(file);
  await Deno.mkdir(dirname(base), { recursive: true });
  await Deno.writeTextFile(`${base}.json`, JSON.stringify(stored, null, 2) + "\n");
  await Deno.writeTextFile(`${base}.md`, markdown(stored));
  return { json: `${base}.json`, md: `${base}.md` };
}

/**
 * Writes `<root>/<slug>/<date>_<what>.json` and the `.md` table beside it (default
 * {@linkcode resultsMarkdown}; a bench with its own tables passes `markdown`); returns both
 * paths. A file of the same name is replaced (one file per run and day).
 */
export async function writeResults<F extends ResultsFile>(
  slug: string,
  what: string,
  file: F,
  root: string = resultsRoot(),
  markdown: (stored: F) => string = resultsMarkdown,
): Promise<{ json: string; md: string }> {
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(slug) || !/^[a-z0-9][a-z0-9_-]*$/.test(what)) {
    throw new TypeError(
      `Bad results name ${slug}/${what}: use lower-case letters, digits, - and _`,
    );
  }
  return await writeResultsAt(
    `${root.replace(/\/$/, "")}/${slug}/${file.date}_${what}`,
    file,
    markdown,
  );
}

/** `r` without a non-finite value2 (and its unit2), its note saying so; else `r` itself. */
export function withoutBadValue2(r: BenchResult): BenchResult {
  if (r.value2 === undefined || Number.isFinite(r.value2)) return r;
  const { value2, unit2, ...rest } = r;
  const why = `no value2${unit2 ? ` (${unit2})` : ""}: ${value2} omitted`;
  return { ...rest, note: r.note ? `${r.note}; ${why}` : why };
}
