/**
 * Quality rows of the weight quantizers (issue 5) for the ablation table: each setting is
 * quantized into an artifact, loaded, and its images for the same prompts and seeds are
 * compared with the FP32 model's (PSNR/SSIM on 8-bit pixels, cosine of the final
 * latents), with the transformer's weight bytes and the pool's peak bytes during sampling.
 * Rows are merged into `bench/results/<device>/<date>_ablation.json` (same settings
 * replaced, other rows kept) with a `.md` table beside it.
 *
 *     deno run -A bench/quant_ablation.ts --model models/emoji-s-b \
 *       --settings uniform:8:8,tlq:4:8 --prompts 4 --steps 20 [--write]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import {
  compareSamples,
  type Comparison,
  generateSamples,
  parsePromptList,
  type SampleSet,
} from "../runtime/eval/eval.ts";
import { loadPipeline, type Pipeline } from "../runtime/pipeline.ts";
import { quantizeModel, writeArtifact } from "../runtime/quant/quantize.ts";
import { deviceSlug, fmt, gitCommit, resultsRoot, today } from "./harness.ts";

/** One row of the ablation table (BENCHMARKS.md), plus the model it was measured on. */
export interface AblationRow {
  model: string;
  quantizer: string;
  wbits: number | null;
  abits: number | null;
  rotation: string;
  attention: string;
  density: number | null;
  attn_bits: number | null;
  psnr: number | null;
  psnr_min?: number | null;
  ssim: number | null;
  cosine: number | null;
  fidelity: number | null;
  ms_step: number;
  weight_bytes: number;
  peak_bytes: number;
  /** Prompts × seeds × steps the row was measured with. */
  images: number;
  steps: number;
}

const KEY = [
  "model",
  "quantizer",
  "wbits",
  "abits",
  "rotation",
  "attention",
  "density",
  "attn_bits",
] as const;

/** Merges rows into the ablation file of `slug` and `date` (same settings replaced). */
export async function mergeAblationRows(
  slug: string,
  rows: AblationRow[],
  meta: { device: string; command: string; date?: string },
): Promise<string> {
  const date = meta.date ?? today();
  const dir = `${resultsRoot().replace(/\/$/, "")}/${slug}`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${date}_ablation.json`;
  // deno-lint-ignore no-explicit-any
  let file: any = undefined;
  try {
    file = JSON.parse(await Deno.readTextFile(path));
  } catch { /* a new file */ }
  const key = (r: object) =>
    KEY.map((k) => String((r as Record<string, unknown>)[k] ?? null)).join("|");
  const mine = new Set(rows.map(key));
  const kept = (file?.rows ?? []).filter((r: Record<string, unknown>) => !mine.has(key(r)));
  file = {
    device: meta.device,
    adapter: "vulkan",
    deno: Deno.version.deno,
    commit: await gitCommit(),
    date,
    command: file?.command && file.command !== meta.command
      ? `${file.command}; ${meta.command}`
      : meta.command,
    ...file,
    rows: [...kept, ...rows],
  };
  file.commit = await gitCommit();
  await Deno.writeTextFile(path, JSON.stringify(file, null, 2) + "\n");
  const head = [
    "model",
    "quantizer",
    "W",
    "A",
    "rotation",
    "attention",
    "PSNR",
    "min",
    "SSIM",
    "cosine",
    "ms/step",
    "weight MB",
    "peak MB",
  ];
  const lines = [
    `# ${date} — ablation rows, ${meta.device}`,
    "",
    `commit ${file.commit} · command: \`${file.command}\``,
    "",
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    // deno-lint-ignore no-explicit-any
    ...file.rows.map((r: any) =>
      `| ${r.model} | ${r.quantizer} | ${r.wbits ?? "-"} | ${
        r.abits ?? "-"
      } | ${r.rotation} | ${r.attention}${r.density ? ` ${r.density}` : ""} | ${
        fmt(r.psnr ?? undefined)
      } | ${fmt(r.psnr_min ?? undefined)} | ${fmt(r.ssim ?? undefined)} | ${
        fmt(r.cosine ?? undefined)
      } | ${fmt(r.ms_step)} | ${fmt(r.weight_bytes / 1e6)} | ${fmt(r.peak_bytes / 1e6)} |`
    ),
  ];
  await Deno.writeTextFile(path.replace(/\.json$/, ".md"), lines.join("\n") + "\n");
  return path;
}

interface Setting {
  quantizer: string;
  wbits: number;
  abits: number;
}

function parseSettings(s: string): Setting[] {
  return s.split(",").filter(Boolean).map((x) => {
    const [quantizer, w, a] = x.split(":");
    return { quantizer, wbits: Number(w), abits: Number(a) };
  });
}

async function measure(pipe: Pipeline, prompts: string[], steps: number, batch: number) {
  const rt = pipe.runtime;
  rt.pool.resetPeak();
  const set = await generateSamples(pipe, { prompts, seeds: [0], steps, batch });
  return {
    set,
    peak: rt.pool.peakBytes,
    msStep: set.ms / (Math.ceil(prompts.length / batch) * steps),
  };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string", default: "models/emoji-s-b" },
      settings: { type: "string", default: "uniform:8:8,tlq:4:8" },
      prompts: { type: "string", default: "4" },
      steps: { type: "string", default: "20" },
      batch: { type: "string", default: "4" },
      "prompt-list": { type: "string" }, // "a|b|c" instead of the emoji prompt file
      write: { type: "boolean", default: false },
    },
  });
  const model = v.model!;
  const prompts = (v["prompt-list"]?.split("|") ?? parsePromptList(
    await Deno.readTextFile(new URL("./prompts/emoji_fidelity.txt", import.meta.url)),
  )).slice(0, Number(v.prompts));
  const steps = Number(v.steps);
  const batch = Number(v.batch);
  const rt = await createRuntime({ adapter: "auto" });
  const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
  const rows: AblationRow[] = [];
  const base = {
    model: model.replace(/\/$/, "").split("/").pop()!,
    rotation: "none",
    attention: "dense",
    density: null,
    attn_bits: null,
    fidelity: null,
    images: prompts.length,
    steps,
  };
  const row = (
    s: Setting | null,
    m: Awaited<ReturnType<typeof measure>>,
    bytes: number,
    c?: Comparison,
  ): AblationRow => ({
    ...base,
    quantizer: s ? s.quantizer : "fp32",
    wbits: s ? s.wbits : null,
    abits: s ? s.abits : null,
    psnr: c ? c.psnr : null,
    psnr_min: c ? c.psnrMin : null,
    ssim: c ? c.ssim : null,
    cosine: c ? c.cosine : null,
    ms_step: m.msStep,
    weight_bytes: bytes,
    peak_bytes: m.peak,
  });
  const save = async () => { // after every row, so a long run keeps what it measured
    if (!v.write) return;
    const path = await mergeAblationRows(deviceSlug(rt.info.description, rt.info.fallback), rows, {
      device: rt.info.description,
      command:
        `deno run -A bench/quant_ablation.ts --model ${model} --settings ${v.settings} --prompts ${v.prompts} --steps ${steps} --batch ${batch} --write`,
    });
    log(`wrote ${path}`);
  };
  log(`${model}: FP32 reference, ${prompts.length} prompts × ${steps} steps, batch ${batch}`);
  const fp = await loadPipeline(rt, { path: model });
  const ref = await measure(fp, prompts, steps, batch);
  rows.push(row(null, ref, fp.transformer.weightBytes));
  fp.release();
  await save();
  const tmp = await Deno.makeTempDir({ prefix: "webdit_ablation_" });
  for (const s of parseSettings(v.settings!)) {
    const t0 = performance.now();
    const r = await quantizeModel({ model, ...s });
    const path = `${tmp}/${s.quantizer}_w${s.wbits}a${s.abits}.safetensors`;
    await writeArtifact(path, r, { force: true });
    log(
      `${s.quantizer} W${s.wbits}A${s.abits}: quantized in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
    const p = await loadPipeline(rt, { path });
    const m = await measure(p, prompts, steps, batch);
    const c = compareSamples(m.set, ref.set as SampleSet);
    rows.push(row(s, m, p.transformer.weightBytes, c));
    log(
      `  PSNR ${c.psnr.toFixed(2)} dB (min ${c.psnrMin.toFixed(2)}), SSIM ${
        c.ssim.toFixed(4)
      }, cosine ${c.cosine.toFixed(5)}, ${
        m.msStep.toFixed(0)
      } ms/step, weights ${p.transformer.weightBytes} B, peak ${m.peak} B`,
    );
    p.release();
    await save();
  }
  await Deno.remove(tmp, { recursive: true });
  console.log(JSON.stringify(rows));
  rt.destroy();
}
