/**
 * The ablation results: rows in BENCHMARKS.md's format merged into
 * `bench/results/<device>/<date>_ablation.json` (a row of the same setting and model is
 * replaced, other rows are kept), a Markdown table beside it, and an SVG plot of quality
 * (PSNR against FP32) over latency (ms per sampler step).
 *
 * @module
 */
import { basename } from "node:path";
import { type AblationSetting, settingKey, settingLabel } from "./ablation_matrix.ts";
import {
  type BenchResult,
  figureRow,
  fmt,
  type ResultsHeader,
  writeResultsAt,
} from "./results_file.ts";

/** One row of the ablation table (BENCHMARKS.md "Results format"), with its model. */
export interface AblationRow extends AblationSetting {
  model: string;
  /** With gptq: the layers it ran on the GPU (the rest on the CPU). */
  gptq_gpu_layers?: number;
  /** With a rotation: how many quantized layers took each branch, e.g. { hadamard: 22, outlier: 38 }. */
  rotation_branches?: Record<string, number>;
  /** The first 16 hex digits of the transformer weights' sha-256 (which weights `model` was). */
  model_sha?: string;
  /** Mean PSNR in dB against FP32 (null for the reference). */
  psnr: number | null;
  /** Lowest PSNR of one image. */
  psnr_min?: number | null;
  /** PSNR of each image in sample order (prompt by prompt, each prompt's seeds in turn), for paired comparisons. */
  psnr_images?: number[] | null;
  ssim: number | null;
  cosine: number | null;
  /** Prompt fidelity in % (null when the model is no emoji model). */
  fidelity: number | null;
  /**
   * ms per sampler step of one batch (`batch` images, CFG) once running: each batch's first
   * step (kernel compiles, prompt encoding) left out.
   */
  ms_step: number;
  /** The transformer's weight bytes on the GPU. */
  weight_bytes: number;
  /** Peak bytes of the runtime's buffer pool while sampling. */
  peak_bytes: number;
  /** Images scored, steps, and images per batch. */
  images: number;
  steps: number;
  batch?: number;
}

/** The results file: the usual header (device, adapter, deno, commit, date, command, driver). */
export interface AblationFile extends ResultsHeader {
  rows: AblationRow[];
  /** Named figures beside the rows (BENCHMARKS.md's format, figure rows): PARO's mass kept. */
  results?: BenchResult[];
  extra?: Record<string, unknown>;
}

const rowKey = (r: AblationRow) => `${r.model}|${settingKey(r)}`;

/** Reads a results file, or undefined when there is none. */
export async function readAblationFile(path: string): Promise<AblationFile | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as AblationFile;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new RangeError(`${path}: not a results file (${(e as Error).message})`);
  }
}

/** Merges `rows` into the file at `path` (same model and setting replaced) and returns it. */
export async function mergeAblation(
  path: string,
  head: Omit<AblationFile, "rows">,
  rows: AblationRow[],
): Promise<AblationFile> {
  const old = await readAblationFile(path);
  const mine = new Set(rows.map(rowKey));
  // A model retrained under the same name is another model: its earlier rows go.
  const sha = new Map(rows.filter((r) => r.model_sha).map((r) => [r.model, r.model_sha]));
  const kept = (old?.rows ?? []).filter((r) =>
    !mine.has(rowKey(r)) && (!sha.has(r.model) || r.model_sha === sha.get(r.model))
  );
  // Earlier commands stay only while some of their rows do.
  const before = kept.length ? (old?.command ?? "").split("; ").filter(Boolean) : [];
  const commands = new Set([...before, head.command]);
  return { ...head, command: [...commands].join("; "), rows: [...kept, ...rows] };
}

const MB = (b: number) => fmt(b / 1e6);
const num = (x: number | null | undefined) => x === null || x === undefined ? "" : fmt(x);

/**
 * The standard error of a row's mean PSNR over its images (sample SD / √n), or undefined
 * with fewer than two images. At W4A4 a change that only moves rounding moved a 32-image
 * mean by 0.8 dB: the table shows how far a mean can be trusted.
 */
export function psnrStandardError(r: Pick<AblationRow, "psnr_images">): number | undefined {
  const v = r.psnr_images;
  if (!v || v.length < 2) return undefined;
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const ss = v.reduce((a, b) => a + (b - mean) ** 2, 0);
  return Math.sqrt(ss / (v.length - 1) / v.length);
}

function psnrCell(r: AblationRow): string {
  const se = psnrStandardError(r);
  return num(r.psnr) + (r.psnr !== null && se !== undefined ? ` ± ${se.toFixed(2)}` : "");
}

/** The Markdown table of a results file; `svg` names the plot beside it. */
export function ablationMarkdown(f: AblationFile, svg = `${f.date}_ablation.svg`): string {
  const head = [
    "model",
    "setting",
    "PSNR dB",
    "min",
    "SSIM",
    "cosine",
    "fidelity %",
    "ms/step",
    "weight MB",
    "peak MB",
  ];
  return [
    `# ${f.date} — ablation, ${f.device}`,
    "",
    `commit ${f.commit} · Deno ${f.deno}${
      f.driver ? ` · driver ${f.driver}` : ""
    } · \`${f.command}\``,
    "",
    "PSNR/SSIM/cosine against the FP32 model's images (same prompts, seeds and batch; PSNR ± " +
    "the standard error of its mean over the images); " +
    "ms/step is one sampler step of one batch (CFG) once running (each batch's first step left out).",
    "",
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => i < 2 ? "---" : "---:").join(" | ")} |`,
    ...f.rows.map((r) =>
      `| ${r.model} | ${settingLabel(r)} | ${psnrCell(r)} | ${num(r.psnr_min)} | ${num(r.ssim)} | ${
        num(r.cosine)
      } | ${num(r.fidelity)} | ${fmt(r.ms_step)} | ${MB(r.weight_bytes)} | ${MB(r.peak_bytes)} |`
    ),
    "",
    ...massMarkdown(f.extra?.paro_mass_kept),
    `![quality against latency](${svg})`,
    "",
  ].join("\n");
}

/**
 * PARO's mass-kept figures as named results (BENCHMARKS.md's format; figures, not times:
 * {@linkcode figureRow}): `paro_mass_kept_d30_held_out_chosen`, … — one per row and key in
 * `keys`.
 */
export function massKeptResults<K extends string>(
  mass: ({ density: number; evaluated_on: string } & Record<K, number>)[],
  keys: readonly K[],
): BenchResult[] {
  return mass.flatMap((r) =>
    keys.map((k) =>
      figureRow(
        `paro_mass_kept_d${Math.round(r.density * 100)}_${r.evaluated_on}_${k}`,
        r[k],
        "share of attention mass",
        "mean over layers, heads and steps; not a time",
      )
    )
  );
}

/** The PARO mass-kept table, when the file has the figures. */
function massMarkdown(raw: unknown): string[] {
  if (!Array.isArray(raw) || !raw.length) return [];
  const rows = raw as {
    density: number;
    evaluated_on: string;
    row_major: number;
    chosen: number;
  }[];
  return [
    "Attention mass the PARO masks keep (mean over layers, heads and steps):",
    "",
    "| density | evaluated on | row-major | chosen orders |",
    "| ---: | --- | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.density} | ${r.evaluated_on} | ${r.row_major.toFixed(4)} | ${r.chosen.toFixed(4)} |`
    ),
    "",
  ];
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

/** Colour per attention plugin / quantizer, so families read at a glance. */
function colour(r: AblationRow): string {
  if (r.attention !== "dense") return r.quantizer === "fp32" ? "#d62728" : "#9467bd";
  if (r.quantizer === "tlq") return r.rotation === "none" ? "#1f77b4" : "#17becf";
  if (r.quantizer === "uniform") return r.rotation === "none" ? "#ff7f0e" : "#bcbd22";
  return "#333";
}

/**
 * An SVG scatter plot of PSNR (y) over ms/step (x) for one model's rows; the FP32 row is the
 * dashed vertical line (its PSNR is infinite).
 */
export function ablationSvg(rows: AblationRow[], title: string): string {
  const W = 840, H = 460, L = 60, R = 320, T = 40, B = 50;
  const pts = rows.filter((r) => r.psnr !== null && Number.isFinite(r.psnr));
  const ref = rows.find((r) => r.quantizer === "fp32" && r.attention === "dense");
  const xs = [...pts.map((r) => r.ms_step), ...(ref ? [ref.ms_step] : [])];
  const ys = pts.map((r) => r.psnr!);
  // Ticks at 1, 2 or 5 × 10^k, five or so across.
  const raw = (Math.max(1, ...xs) * 1.1) / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const tick = [1, 2, 5, 10].map((k) => k * pow).find((t) => t >= raw)!;
  const x0 = 0, x1 = Math.ceil((Math.max(1, ...xs) * 1.05) / tick) * tick;
  const y0 = Math.floor(Math.min(10, ...ys) / 5) * 5, y1 = Math.ceil(Math.max(40, ...ys) / 5) * 5;
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="22" font-size="14">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#000"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#000"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">ms per sampler step</text>`,
    `<text transform="translate(16 ${
      (T + H - B) / 2
    }) rotate(-90)" text-anchor="middle">PSNR vs FP32 (dB)</text>`,
  ];
  for (let y = y0; y <= y1; y += 5) {
    out.push(
      `<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#eee"/>`,
      `<text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y}</text>`,
    );
  }
  for (let x = x0; x <= x1 + 1e-9; x += tick) {
    out.push(
      `<text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${x === 0 ? "0" : fmt(x)}</text>`,
    );
  }
  if (ref) {
    out.push(
      `<line x1="${px(ref.ms_step)}" y1="${T}" x2="${px(ref.ms_step)}" y2="${
        H - B
      }" stroke="#333" stroke-dasharray="4 3"/>`,
      `<text x="${px(ref.ms_step) + 4}" y="${T + 10}">FP32</text>`,
    );
  }
  pts.forEach((r, i) => {
    const c = colour(r);
    out.push(
      `<circle cx="${px(r.ms_step)}" cy="${py(r.psnr!)}" r="4" fill="${c}"><title>${
        esc(settingLabel(r))
      }: ${fmt(r.psnr!)} dB, ${fmt(r.ms_step)} ms/step</title></circle>`,
      `<text x="${px(r.ms_step) + 6}" y="${py(r.psnr!) - 4}" fill="${c}">${i + 1}</text>`,
      `<text x="${W - R + 14}" y="${T + 4 + i * 14}" fill="${c}">${i + 1}. ${
        esc(settingLabel(r))
      } (${fmt(r.psnr!)} dB)</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/**
 * Writes `<base>.json` and `<base>.md` by the shared writer (results_file.ts writeResultsAt)
 * and `<base>.svg` (the plot of `model`'s rows).
 */
export async function writeAblation(base: string, f: AblationFile, model: string): Promise<void> {
  await writeResultsAt(base, f, (g) => ablationMarkdown(g, `${basename(base)}.svg`));
  const mine = f.rows.filter((r) => r.model === model);
  await Deno.writeTextFile(
    `${base}.svg`,
    ablationSvg(mine, `${model} — quality against latency (${f.device})`),
  );
}
