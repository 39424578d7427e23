/**
 * PARO ablation on the bundled model (CPU or GPU): the attention mass the masks keep with
 * and without token reordering, and the image quality (PSNR/SSIM/cosine against the same
 * model's dense FP32 images, same prompts and seeds) of PARO at densities 0.5/0.3/0.2 with
 * INT8, INT4 and float attention.
 *
 *     deno run -A bench/paro_ablation.ts [--model DIR] [--prompts N] [--batch N] [--steps N]
 *       [--stats FILE] [--heldout FILE] [--alpha A] [--write] [--only mass]
 *
 * Calibration: PARO_CALIBRATION_PROMPTS (2 prompts) over every step; the held-out mass
 * figures use two other prompts' statistics (`--heldout A.bin,B.bin`). `--only mass`
 * recomputes the mass figures and keeps the image rows of the same day's results file.
 * Statistics files are reused when FILE.key says they are of the same weights, prompts and
 * steps (they take minutes on the CPU). Images: the first N prompts of
 * bench/prompts/emoji_fidelity.txt (none of them a calibration prompt), seed 0.
 * `--write` writes bench/results/<device>/<date>_ablation_paro.{json,md}.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import {
  compareSamples,
  generateSamples,
  parsePromptList,
  type SampleSet,
} from "../runtime/eval/eval.ts";
import { loadPipeline } from "../runtime/pipeline.ts";
import { cachedParoStats, mergeParoStats } from "../runtime/quant/paro_calibrate.ts";
import {
  blocksOf,
  keptMass,
  type ParoStats,
  planKeptMass,
  planParo,
  selectMask,
} from "../runtime/quant/paro_plan.ts";
import { PARO_CALIBRATION_PROMPTS, ParoSelfAttention } from "../plugins/attention/paro.ts";
import { denseAttention } from "../plugins/attention/dense.ts";
import { massKeptResults } from "./ablation_report.ts";
import {
  deviceSlug,
  gitCommit,
  resultsHeader,
  resultsRoot,
  today,
  writeResults,
} from "./harness.ts";

const args = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string", default: new URL("../models/emoji-s", import.meta.url).pathname },
    prompts: { type: "string", default: "2" },
    batch: { type: "string", default: "2" },
    steps: { type: "string", default: "20" },
    stats: { type: "string", default: "/tmp/webdit_paro_stats.bin" },
    heldout: { type: "string", default: "/tmp/webdit_paro_heldout.bin" },
    alpha: { type: "string", default: "0.5" },
    only: { type: "string", default: "" },
    write: { type: "boolean", default: false },
  },
});
const steps = Number(args.values.steps);
const alpha = Number(args.values.alpha);
const log = (s: string) => console.error(`[paro ${(performance.now() / 1000).toFixed(0)}s] ${s}`);

const rt = await createRuntime();
const BASE = ["hw", "wh", "tile8x8_hw", "tile8x8_wh"];

async function statsFor(file: string, prompts: readonly string[]): Promise<ParoStats> {
  log(`statistics of ${JSON.stringify(prompts)} (${steps} steps): ${file}, or a calibration…`);
  return await cachedParoStats(rt, file, {
    path: args.values.model,
    prompts,
    steps,
    extended: true,
    onProgress: (p) => log(`  prompt ${p.prompt + 1}/${p.prompts} step ${p.step}/${p.steps}`),
  });
}

const evalPrompts = parsePromptList(
  await Deno.readTextFile(new URL("./prompts/emoji_fidelity.txt", import.meta.url)),
).filter((p) => !PARO_CALIBRATION_PROMPTS.includes(p));
const stats = await statsFor(args.values.stats!, PARO_CALIBRATION_PROMPTS);
// Held-out prompts (not calibration prompts): a flag (the list's last) and a face (its first).
const heldoutPrompts = [evalPrompts[evalPrompts.length - 1], evalPrompts[0]];
const heldoutFiles = args.values.heldout!.split(",");
const heldout = mergeParoStats(
  await Promise.all(
    heldoutPrompts.map((p, i) => statsFor(heldoutFiles[i] ?? `${heldoutFiles[0]}.${i}`, [p])),
  ),
);

// --- Mass kept ------------------------------------------------------------------------
const mean = (m: number[][]) => m.flat().reduce((a, b) => a + b, 0) / m.flat().length;

/** Mass kept per head by the best single order per head (an upper bound for any score). */
function oracle(s: ParoStats, evalOn: ParoStats, density: number, cands: string[]): number {
  const per = cands.map((c) =>
    planKeptMass(planParo(s, { density, bits: 8, candidates: [c] }), evalOn)
  );
  return mean(per[0].map((l, li) => l.map((_, h) => Math.max(...per.map((p) => p[li][h])))));
}

/** Mass kept when each step had its own mask (no sharing over the second half), row-major. */
function unsharedHw(s: ParoStats, density: number): number {
  const nb = blocksOf(s.h * s.w);
  const c = s.candidates.indexOf("hw");
  const all: number[] = [];
  for (let l = 0; l < s.layers; l++) {
    for (let h = 0; h < s.heads; h++) {
      for (let st = 0; st < s.steps; st++) {
        const m = s.stats[l][h][st][c].mass;
        all.push(keptMass(selectMask(m, nb, density), nb, m));
      }
    }
  }
  return all.reduce((a, b) => a + b, 0) / all.length;
}

interface MassRow {
  density: number;
  evaluated_on: "calibration" | "held_out";
  row_major: number;
  chosen: number;
  chosen_extended: number;
  oracle: number;
  oracle_extended: number;
  alpha_sweep: Record<string, number>;
  orders: Record<string, number>;
}

const massRows: MassRow[] = [];
for (const density of [0.5, 0.3, 0.2]) {
  for (const [label, evalOn] of [["calibration", stats], ["held_out", heldout]] as const) {
    const hw = planParo(stats, { density, bits: 8, candidates: ["hw"] });
    const chosen = planParo(stats, { density, bits: 8, alpha, candidates: BASE });
    const ext = planParo(stats, { density, bits: 8, alpha });
    const sweep: Record<string, number> = {};
    for (const a of [0, 0.25, 0.5, 0.75, 1]) {
      sweep[String(a)] = mean(
        planKeptMass(planParo(stats, { density, bits: 8, alpha: a, candidates: BASE }), evalOn),
      );
    }
    const orders: Record<string, number> = {};
    for (const o of chosen.meta.orders.flat()) orders[o] = (orders[o] ?? 0) + 1;
    massRows.push({
      density,
      evaluated_on: label,
      row_major: mean(planKeptMass(hw, evalOn)),
      chosen: mean(planKeptMass(chosen, evalOn)),
      chosen_extended: mean(planKeptMass(ext, evalOn)),
      oracle: oracle(stats, evalOn, density, BASE),
      oracle_extended: oracle(stats, evalOn, density, stats.candidates),
      alpha_sweep: sweep,
      orders,
    });
  }
}
const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
console.log(
  "\n| density | on | row-major | chosen (α " + alpha +
    ") | chosen, extended | best order per head | α 0 / 0.25 / 0.5 / 0.75 / 1 |",
);
console.log("| ---: | --- | ---: | ---: | ---: | ---: | --- |");
for (const m of massRows) {
  console.log(
    `| ${m.density} | ${m.evaluated_on} | ${r4(m.row_major)} | ${r4(m.chosen)} | ${
      r4(m.chosen_extended)
    } | ${r4(m.oracle)} | ${
      ["0", "0.25", "0.5", "0.75", "1"].map((a) => r4(m.alpha_sweep[a])).join(" / ")
    } |`,
  );
}
const unshared = [0.5, 0.3, 0.2].map((d) => ({
  density: d,
  row_major_per_step_masks: unsharedHw(stats, d),
}));

// --- Image quality --------------------------------------------------------------------
interface Row {
  quantizer: string;
  wbits: number | null;
  abits: number | null;
  rotation: string;
  attention: string;
  density: number | null;
  attn_bits: number | null;
  psnr: number | null;
  ssim: number | null;
  cosine: number | null;
  fidelity: number | null;
  ms_step: number;
  weight_bytes: number;
  peak_bytes: number;
  note?: string;
}
const slug = deviceSlug(rt.info.description, rt.info.fallback);
const outBase = `${resultsRoot().replace(/\/$/, "")}/${slug}/${today()}_ablation_paro`;
let rows: Row[] = [];
let imagesCommand: string | undefined;
if (args.values.only === "mass") {
  // Keep the image rows of an earlier run of the same day, only the mass figures change.
  try {
    const old = JSON.parse(await Deno.readTextFile(`${outBase}.json`));
    rows = old.rows ?? [];
    imagesCommand = old.extra?.images_command ?? old.command;
  } catch { /* none yet */ }
} else {
  const n = Number(args.values.prompts);
  const prompts = evalPrompts.slice(0, n);
  const pipe = await loadPipeline(rt, { path: args.values.model, vae: false }); // statistics only
  const weightBytes = pipe.transformer.weightBytes;
  const run = async (label: string): Promise<{ set: SampleSet; peak: number }> => {
    rt.pool.resetPeak();
    const set = await generateSamples(pipe, {
      prompts,
      seeds: [0],
      steps,
      batch: Number(args.values.batch),
      onProgress: (d, t) => d % steps === 0 && log(`  ${label}: ${d}/${t}`),
    });
    return { set, peak: rt.pool.peakBytes };
  };
  log(`reference: dense FP32, ${prompts.length} prompts × ${steps} steps`);
  pipe.transformer.selfAttention = denseAttention();
  const ref = await run("dense");
  const base = {
    quantizer: "none",
    wbits: null,
    abits: null,
    rotation: "none",
    fidelity: null,
    weight_bytes: weightBytes,
  };
  rows.push({
    ...base,
    quantizer: "fp32",
    attention: "dense",
    density: null,
    attn_bits: null,
    psnr: null,
    ssim: null,
    cosine: null,
    ms_step: Number.isFinite(ref.set.steadyStepMs)
      ? ref.set.steadyStepMs
      : ref.set.ms / (prompts.length * steps),
    peak_bytes: ref.peak,
    note: `reference: ${prompts.length} prompts × ${steps} steps, seed 0`,
  });
  const configs: { density: number; bits: 8 | 4 | 16; candidates?: string[]; note?: string }[] = [];
  for (const density of [0.5, 0.3, 0.2]) {
    for (const bits of [8, 4, 16] as const) configs.push({ density, bits });
  }
  configs.push({ density: 1, bits: 8, note: "quantization only (every block kept)" });
  configs.push({ density: 1, bits: 4, note: "quantization only (every block kept)" });
  configs.push({ density: 0.5, bits: 16, candidates: ["hw"], note: "no reordering (row-major)" });
  for (const c of configs) {
    const plan = planParo(stats, {
      density: c.density,
      bits: c.bits,
      alpha,
      candidates: c.candidates ?? BASE,
    });
    const attn = new ParoSelfAttention(rt, plan);
    pipe.transformer.selfAttention = attn;
    const label = `paro d${c.density} ${c.bits === 16 ? "float" : `int${c.bits}`}${
      c.candidates ? " hw" : ""
    }`;
    log(label);
    const r = await run(label);
    attn.release();
    const cmp = compareSamples(r.set, ref.set);
    rows.push({
      ...base,
      attention: c.candidates ? "paro_hw" : "paro",
      density: c.density,
      attn_bits: c.bits,
      psnr: cmp.psnr,
      ssim: cmp.ssim,
      cosine: cmp.cosine,
      ms_step: Number.isFinite(r.set.steadyStepMs)
        ? r.set.steadyStepMs
        : r.set.ms / (prompts.length * steps),
      peak_bytes: r.peak,
      note: [c.note, `PSNR min ${cmp.psnrMin.toFixed(2)}`].filter(Boolean).join("; "),
    });
    log(
      `  PSNR ${cmp.psnr.toFixed(2)} SSIM ${cmp.ssim.toFixed(4)} cosine ${cmp.cosine.toFixed(5)}`,
    );
  }
  pipe.release();
}

const file = {
  ...resultsHeader(
    rt.info.description,
    await gitCommit(),
    `deno run -A bench/paro_ablation.ts ${Deno.args.join(" ")}`.trim(),
  ),
  results: massKeptResults(massRows, ["row_major", "chosen", "chosen_extended", "oracle"]),
  rows,
  extra: {
    mass_kept: massRows,
    model: args.values.model,
    steps,
    alpha,
    calibration_prompts: PARO_CALIBRATION_PROMPTS,
    eval_prompts: evalPrompts.slice(0, Number(args.values.prompts)),
    heldout_prompts: heldoutPrompts,
    images_command: imagesCommand,
    candidates: stats.candidates,
    per_step_masks_row_major: unshared,
    host_load_average: Deno.loadavg(),
  },
};
const md = [
  `# ${file.date} — PARO ablation, ${file.device}`,
  "",
  `commit ${file.commit} · \`${file.command}\` · model ${args.values.model} · ${steps} steps · α ${alpha}`,
  "",
  "## Attention mass kept by the masks (mean over layers, heads and steps)",
  "",
  "| density | evaluated on | row-major | chosen orders | chosen, extended candidates | best order per head |",
  "| ---: | --- | ---: | ---: | ---: | ---: |",
  ...massRows.map((m) =>
    `| ${m.density} | ${m.evaluated_on} | ${r4(m.row_major)} | ${r4(m.chosen)} | ${
      r4(m.chosen_extended)
    } | ${r4(m.oracle)} |`
  ),
  "",
  "## Images against dense FP32 (same prompts and seeds)",
  "",
  "| attention | density | bits | PSNR dB | SSIM | cosine | ms/step | note |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ...rows.map((r) =>
    `| ${r.attention} | ${r.density ?? ""} | ${r.attn_bits ?? ""} | ${r.psnr?.toFixed(2) ?? ""} | ${
      r.ssim?.toFixed(4) ?? ""
    } | ${r.cosine?.toFixed(5) ?? ""} | ${r.ms_step.toFixed(0)} | ${r.note ?? ""} |`
  ),
  "",
].join("\n");
console.log("\n" + md);
if (args.values.write) {
  const p = await writeResults(slug, "ablation_paro", file, resultsRoot(), () => md);
  log(`wrote ${p.json} and .md`);
}
rt.destroy();
