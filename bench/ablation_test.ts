import { assert, assertEquals, assertRejects } from "../tests/assert.ts";
import { ablation } from "./ablation.ts";
import { parseMatrix, REFERENCE, settingKey, settingLabel } from "./ablation_matrix.ts";
import {
  ablationMarkdown,
  type AblationRow,
  ablationSvg,
  massKeptResults,
  mergeAblation,
  psnrStandardError,
  writeAblation,
} from "./ablation_report.ts";

Deno.test("matrix: defaults, grid expansion, duplicates dropped, reference first", async () => {
  const m = await parseMatrix({
    prompts: ["red apple"],
    rows: [{ quantizer: "tlq", wbits: 4, abits: 8 }, { attention: "paro" }],
    grid: { quantizer: ["tlq", "uniform"], wbits: [3, 4], abits: [8] },
  }, "m.json");
  assertEquals(m.model, "models/emoji-s");
  assertEquals(m.steps, 20);
  assertEquals(m.settings[0], REFERENCE);
  // 1 reference + 2 rows + 4 grid settings, one of which repeats the first row.
  assertEquals(m.settings.length, 6);
  const paro = m.settings[2];
  assertEquals([paro.density, paro.attn_bits], [0.3, 8]);
  assertEquals(settingLabel(paro), "fp32 paro 0.3 int8");
  assertEquals(new Set(m.settings.map(settingKey)).size, m.settings.length);
});

Deno.test("matrix: gptq and abits_override rows are their own settings", async () => {
  const base = { quantizer: "uniform", wbits: 8, abits: 8 };
  const over = [{ pattern: "*.attn1.to_*", abits: 16 }];
  const m = await parseMatrix({
    prompts: ["red apple"],
    rows: [
      base,
      { ...base, gptq: true },
      { ...base, abits_override: over },
      { ...base, gptq: true, gptq_device: "cpu" },
      { ...base, center: "midrange" },
      { ...base, rotation: "adaptive", alpha: 0.25 },
      { ...base, act_group: 64 },
      { ...base, act_group: 64, act_asym: true },
      { ...base, rotation: "hadamard", smooth: false },
      { ...base, rotation: "adaptive", tau: 20 },
      { ...base, rotation: "adaptive", ars_select: "error" },
      { quantizer: "tlq", wbits: 3, abits: 8, tlq_fit: "mse" },
      { quantizer: "tlq", wbits: 4, abits: 8, tlq_assign: "nearest" },
      { ...base, cfg_delta: true },
      { ...base, gptq: true, gptq_damp: 0.001 },
      { ...base, wbits: 4, group_size: 64 },
      { ...base, low_rank: 16, low_rank_override: [{ pattern: "*.attn2.*", rank: 0 }] },
      { ...base, gptq: true, low_rank: 32, low_rank_fit: "svd" },
      { ...base, gptq: true, low_rank: 32 },
      { ...base, rotation: "outlier", greedy_objective: "range" },
      { quantizer: "fp32", attention: "paro", density: 0.3, attn_bits: 8, paro_alpha: 0.9 },
    ],
  }, "m.json");
  assertEquals(m.settings.length, 22);
  assertEquals(new Set(m.settings.map(settingKey)).size, 22);
  assertEquals(settingLabel(m.settings[21]), "fp32 paro 0.3 int8 α 0.9");
  assertEquals(settingKey(m.settings[20]), "uniform|8|8|outlier|dense|null|null|greedy-range");
  assertEquals(settingLabel(m.settings[20]), "uniform W8A8 greedy range outlier");
  // The branch's fit: named when given; the label says the default's (hessian with GPTQ).
  assertEquals(
    settingKey(m.settings[18]),
    "uniform|8|8|none|dense|null|null|gptq|lowrank-32|lrfit-svd",
  );
  assertEquals(settingLabel(m.settings[18]), "uniform W8A8 gptq low-rank 32 (svd fit)");
  assertEquals(settingLabel(m.settings[19]), "uniform W8A8 gptq low-rank 32 (hessian fit)");
  assertEquals(
    settingKey(m.settings[17]),
    "uniform|8|8|none|dense|null|null|lowrank-16|lowrank:*.attn2.*=0",
  );
  assertEquals(
    settingLabel(m.settings[17]),
    "uniform W8A8 low-rank 16 (*.attn2.* R 0) (refit fit)",
  );
  assertEquals(settingKey(m.settings[16]), "uniform|4|8|none|dense|null|null|wgroup-64");
  assertEquals(settingLabel(m.settings[16]), "uniform W4A8 g64");
  assertEquals(settingKey(m.settings[15]), "uniform|8|8|none|dense|null|null|gptq-damp-0.001");
  assertEquals(settingLabel(m.settings[15]), "uniform W8A8 gptq damp 0.001");
  assertEquals(settingKey(m.settings[14]), "uniform|8|8|none|dense|null|null|cfgd");
  assertEquals(settingLabel(m.settings[14]), "uniform W8A8 CFG delta");
  assertEquals(settingKey(m.settings[13]), "tlq|4|8|none|dense|null|null|assign-nearest");
  assertEquals(settingLabel(m.settings[13]), "tlq W4A8 nearest-rounded");
  assertEquals(settingKey(m.settings[12]), "tlq|3|8|none|dense|null|null|fit-mse");
  assertEquals(settingLabel(m.settings[12]), "tlq W3A8 mse-fit");
  assertEquals(settingKey(m.settings[11]), "uniform|8|8|adaptive|dense|null|null|ars-error");
  assertEquals(settingLabel(m.settings[11]), "uniform W8A8 ARS by error adaptive");
  assertEquals(settingLabel(m.settings[9]), "uniform W8A8 unsmoothed hadamard");
  assertEquals(settingKey(m.settings[10]), "uniform|8|8|adaptive|dense|null|null|tau-20");
  assertEquals(settingLabel(m.settings[10]), "uniform W8A8 τ 20 adaptive");
  assertEquals(settingLabel(m.settings[8]), "uniform W8A8 act groups 64 asym");
  assertEquals(settingKey(m.settings[7]), "uniform|8|8|none|dense|null|null|actgroup-64");
  assertEquals(settingLabel(m.settings[7]), "uniform W8A8 act groups 64");
  assertEquals(settingLabel(m.settings[6]), "uniform W8A8 α 0.25 adaptive");
  assertEquals(settingKey(m.settings[5]), "uniform|8|8|none|dense|null|null|center-midrange");
  assertEquals(settingLabel(m.settings[5]), "uniform W8A8 centred (midrange)");
  assertEquals(settingKey(m.settings[2]), "uniform|8|8|none|dense|null|null|gptq");
  assertEquals(settingLabel(m.settings[4]), "uniform W8A8 gptq (cpu)");
  // A plain row's key is what it was before these fields existed.
  assertEquals(settingKey(m.settings[1]), "uniform|8|8|none|dense|null|null");
  assertEquals(settingLabel(m.settings[2]), "uniform W8A8 gptq");
  assertEquals(settingLabel(m.settings[3]), "uniform W8A8 (*.attn1.to_* A16)");
  assertEquals(m.settings[3].abits_override, over);
});

Deno.test("matrix: a default written out (greedy rowmax, PARO α 0.5) is the row without it", async () => {
  const outlier = { quantizer: "tlq", wbits: 4, abits: 8, rotation: "outlier" };
  const paro = { quantizer: "fp32", attention: "paro", density: 0.3 };
  const m = await parseMatrix({
    prompts: ["red apple"],
    rows: [
      outlier,
      { ...outlier, greedy_objective: "rowmax" },
      paro,
      { ...paro, paro_alpha: 0.5 },
      { ...paro, paro_alpha: 0.25 },
    ],
  }, "m.json");
  // Reference, outlier, paro, paro α 0.25: the written-out defaults were dropped as repeats.
  assertEquals(m.settings.map(settingLabel), [
    "fp32",
    "tlq W4A8 outlier",
    "fp32 paro 0.3 int8",
    "fp32 paro 0.3 int8 α 0.25",
  ]);
  assertEquals([m.settings[1].greedy_objective, m.settings[2].paro_alpha], [undefined, undefined]);
  // A row stored with the default written out keys and reads as the row without it.
  const stored = { ...m.settings[1], greedy_objective: "rowmax" as const };
  assertEquals([settingKey(stored), settingLabel(stored)], [
    settingKey(m.settings[1]),
    "tlq W4A8 outlier",
  ]);
  assertEquals(settingKey({ ...m.settings[2], paro_alpha: 0.5 }), settingKey(m.settings[2]));
  // Still checked as given.
  await assertRejects(
    () =>
      parseMatrix({
        prompts: ["a"],
        rows: [{ ...outlier, rotation: "hadamard", greedy_objective: "rowmax" }],
      }, "m.json"),
    RangeError,
    "rows[0].greedy_objective needs rotation outlier or adaptive",
  );
});

Deno.test("matrix: the default prompt count skips calibration prompts", async () => {
  const m = await parseMatrix({ prompts: 3 }, "m.json");
  assertEquals(m.prompts.length, 3);
  assert(!m.prompts.includes("grinning face") && !m.prompts.includes("red apple"));
});

Deno.test("matrix: steps and guidance left out are the model's (--model's when given)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/model_index.json`,
      JSON.stringify({ webdit: { default_steps: 7, default_guidance: 2 } }),
    );
    const m = await parseMatrix({ prompts: 1, model: "models/emoji-s" }, "m.json", dir);
    assertEquals([m.model, m.steps, m.guidance], [dir, 7, 2]);
    const own = await parseMatrix({ prompts: 1, steps: 3, guidance: 1 }, "m.json", dir);
    assertEquals([own.steps, own.guidance], [3, 1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("matrix: bad fields are named", async () => {
  const bad: [unknown, string][] = [
    [[], "m.json: the matrix must be a JSON object"],
    [{ prompt: 3 }, "m.json: prompt is not a matrix field"],
    [{ rows: [{ quantizer: "tlq", abits: 8 }] }, 'rows[0] quantizer "tlq" needs wbits'],
    [{ rows: [{ wbits: 4 }] }, "rows[0] fp32 takes no wbits"],
    [{ rows: [{ attention: "paro", density: 2 }] }, "rows[0].density must be in (0, 1]"],
    [{ rows: [{ density: 0.3 }] }, "rows[0] dense attention takes no density"],
    [{ rows: [{ bits: 4 }] }, "rows[0].bits is not a setting"],
    [{ grid: { wbits: 4 } }, "grid.wbits must be a list"],
    [{ steps: 0 }, "steps must be an integer in [1, 1000]"],
    [{ seeds: [-1] }, "seeds[0] must be an integer"],
    [{ rows: [{ gptq: true }] }, "rows[0] fp32 takes no wbits, abits, rotation, gptq"],
    [
      { rows: [{ quantizer: "uniform", wbits: 3, abits: 8, tlq_fit: "mse" }] },
      'rows[0].tlq_fit is the "tlq" quantizer\'s',
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 3, abits: 8, tlq_fit: "percentile" }] },
      'rows[0].tlq_fit must be "mse" (percentile is the default)',
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, tlq_fit: "mse", tlq_assign: "nearest" }] },
      'rows[0].tlq_assign is the "tlq" quantizer\'s, without tlq_fit',
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, center: "median" }] },
      'rows[0].center must be "mean" or "midrange"',
    ],
    [{ rows: [{ center: "mean" }] }, "rows[0] fp32 takes no wbits, abits, rotation, gptq"],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, act_group: 24 }] },
      "rows[0].act_group must be a multiple of 16, got 24",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, act_asym: true }] },
      "rows[0].act_asym must be true, beside an act_group",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 16, cfg_delta: true }] },
      "rows[0].cfg_delta needs abits 4, 6 or 8",
    ],
    [{ rows: [{ cfg_delta: true }] }, "rows[0] fp32 takes no wbits"],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, alpha: 2 }] },
      "rows[0].alpha must be in [0, 1]",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, alpha: 0.5 }] },
      "rows[0].alpha needs a rotation",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation: "hadamard", smooth: true }] },
      "rows[0].smooth must be false",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, smooth: false }] },
      "rows[0].smooth needs a rotation",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation: "hadamard", tau: 2 }] },
      "rows[0].tau is the adaptive rotation's threshold",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation: "adaptive", tau: -1 }] },
      "rows[0].tau must be a positive number",
    ],
    [
      {
        rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation: "hadamard", ars_select: "error" }],
      },
      "rows[0].ars_select is the adaptive rotation's",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation_seed: 1 }] },
      "rows[0].rotation_seed needs a rotation",
    ],
    [
      {
        rows: [{
          quantizer: "tlq",
          wbits: 4,
          abits: 8,
          rotation: "hadamard",
          greedy_objective: "range",
        }],
      },
      "rows[0].greedy_objective needs rotation outlier or adaptive",
    ],
    [
      {
        rows: [{
          quantizer: "tlq",
          wbits: 4,
          abits: 8,
          rotation: "outlier",
          greedy_objective: "max",
        }],
      },
      "rows[0].greedy_objective must be rowmax, range or absmax",
    ],
    [
      { rows: [{ quantizer: "fp32", paro_alpha: 0.5 }] },
      "dense attention takes no density, attn_bits or paro_alpha",
    ],
    [
      { rows: [{ quantizer: "fp32", attention: "paro", paro_alpha: 2 }] },
      "rows[0].paro_alpha must be in [0, 1]",
    ],
    [
      {
        rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation: "hadamard", rotation_seed: 0.5 }],
      },
      "rows[0].rotation_seed must be an integer",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, rotation: "adaptive", ars_select: "rms" }] },
      'rows[0].ars_select must be "error"',
    ],
    [
      {
        rows: [{
          quantizer: "tlq",
          wbits: 4,
          abits: 8,
          rotation: "adaptive",
          ars_select: "error",
          tau: 2,
        }],
      },
      "rows[0].tau is the rms selection's threshold",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, gptq_device: "cpu" }] },
      "rows[0].gptq_device needs gptq: true",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, group_size: 24 }] },
      "rows[0].group_size must be a multiple of 16",
    ],
    [
      { rows: [{ quantizer: "uniform", wbits: 4, abits: 8, group_size: 40 }] },
      "rows[0].group_size must be a multiple of 16",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, gptq_damp: 0.1 }] },
      "rows[0].gptq_damp needs gptq: true",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, gptq: true, gptq_damp: -1 }] },
      "rows[0].gptq_damp must be a number ≥ 0",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, gptq: true, gptq_device: "tpu" }] },
      'rows[0].gptq_device must be "cpu" or "gpu"',
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, abits_override: [{ abits: 16 }] }] },
      "rows[0].abits_override[0] needs a pattern",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, low_rank_override: [] }] },
      "rows[0].low_rank_override must be a non-empty list of { pattern, rank }",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, low_rank: 8, low_rank_fit: "qr" }] },
      'rows[0].low_rank_fit must be "svd", "refit", "hessian"',
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, low_rank_fit: "svd" }] },
      "rows[0].low_rank_fit needs low_rank",
    ],
    [
      { rows: [{ quantizer: "tlq", wbits: 4, abits: 8, low_rank: 8, low_rank_fit: "hessian" }] },
      'rows[0].low_rank_fit "hessian" needs gptq',
    ],
  ];
  for (const [raw, msg] of bad) {
    await assertRejects(() => parseMatrix(raw, "m.json"), RangeError, msg);
  }
});

const row = (o: Partial<AblationRow>): AblationRow => ({
  model: "m",
  ...REFERENCE,
  psnr: null,
  ssim: null,
  cosine: null,
  fidelity: null,
  ms_step: 100,
  weight_bytes: 4e6,
  peak_bytes: 8e6,
  images: 2,
  steps: 4,
  ...o,
});

Deno.test("report: merge replaces the same setting and keeps the others", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/x.json`;
  const head = {
    device: "d",
    adapter: "vulkan",
    deno: "2.9.6",
    commit: "c",
    date: "2026-01-01",
    command: "a",
  };
  const q = { quantizer: "tlq", wbits: 4, abits: 8 };
  await Deno.writeTextFile(
    path,
    JSON.stringify(await mergeAblation(path, head, [row({}), row({ ...q, psnr: 20 })])),
  );
  const f = await mergeAblation(path, { ...head, command: "b" }, [row({ ...q, psnr: 30 })]);
  assertEquals(f.rows.length, 2);
  assertEquals(f.rows.find((r) => r.quantizer === "tlq")!.psnr, 30);
  // Rows of the same model name but other weights (or of unknown weights) are dropped.
  await Deno.writeTextFile(path, JSON.stringify(f));
  const g = await mergeAblation(path, head, [row({ ...q, wbits: 3, model_sha: "ab" })]);
  assertEquals(g.rows.map((r) => r.wbits ?? null), [3]);
  assertEquals(g.command, "a", "no row of command b is left, so neither is b");
  await Deno.writeTextFile(path, JSON.stringify(g));
  const h = await mergeAblation(path, head, [
    row({ model_sha: "ab" }),
    row({ model: "n", model_sha: "cd" }),
  ]);
  assertEquals(h.rows.length, 3);
  assertEquals(f.command, "a; b");
  const md = ablationMarkdown(f);
  assert(md.includes("| m | tlq W4A8 | 30.0 |"), md);
  // With per-image PSNRs the mean gets its standard error: SD √(16/3) over 4 images → ± 1.15.
  const se = ablationMarkdown({
    ...f,
    rows: [row({ ...q, psnr: 31, psnr_images: [29, 29, 33, 33] })],
  });
  assertEquals(psnrStandardError({ psnr_images: [29, 29, 33, 33] }), Math.sqrt(16 / 3 / 4));
  assert(se.includes("| m | tlq W4A8 | 31.0 ± 1.15 |"), se);
  const svg = ablationSvg(f.rows, "t");
  assertEquals((svg.match(/<circle/g) ?? []).length, 1); // the reference is the dashed line
  assert(svg.includes("FP32") && svg.startsWith("<svg"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("report: mass-kept figures are figure rows, written by the shared writer", async () => {
  const mass = [{ density: 0.3, evaluated_on: "held_out", row_major: 0.5, chosen: NaN }];
  const results = massKeptResults(mass, ["row_major", "chosen"]);
  assertEquals(results.map((r) => [r.name, r.median_ms, r.min_ms]), [
    ["paro_mass_kept_d30_held_out_row_major", 0, 0],
    ["paro_mass_kept_d30_held_out_chosen", 0, 0],
  ]);
  const dir = await Deno.makeTempDir();
  try {
    const head = { device: "d", adapter: "a", deno: "2.9.6", commit: "c", date: "2026-01-01" };
    const base = `${dir}/d/2026-01-01_ablation`;
    await writeAblation(base, { ...head, command: "x", rows: [row({})], results }, "m");
    const text = await Deno.readTextFile(`${base}.json`);
    const f = JSON.parse(text);
    // A figure that is not a number goes to extra.failed (JSON has no NaN), as in every file.
    assertEquals(f.results.map((r: { name: string }) => r.name), [results[0].name]);
    assertEquals(f.extra.failed[0].name, results[1].name);
    assertEquals(f.rows.length, 1);
    for (const ext of ["md", "svg"]) assert(Deno.statSync(`${base}.${ext}`).size > 100);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ablation: a small matrix on the tiny model, then --resume runs only new rows", async () => {
  const dir = await Deno.makeTempDir();
  const matrix = {
    model: new URL("../tests/fixtures/pixart_pixel", import.meta.url).pathname,
    prompts: ["red apple", "a big blue car with yellow eyes"],
    steps: 4,
    batch: 2,
    calibration: { prompts: ["red apple"], steps: 4 },
    rows: [
      { quantizer: "uniform", wbits: 8, abits: 8 },
      { quantizer: "uniform", wbits: 8, abits: 8, rotation: "adaptive" },
    ],
  };
  const file = `${dir}/m.json`;
  await Deno.writeTextFile(file, JSON.stringify(matrix));
  const args = ["--matrix", file, "--out", `${dir}/out`, "--state", `${dir}/state`, "--adapter"];
  assertEquals(await ablation([...args, "cpu"]), 0);
  const [sub] = [...Deno.readDirSync(`${dir}/out`)];
  const json = [...Deno.readDirSync(`${dir}/out/${sub.name}`)].find((e) =>
    e.name.endsWith("_ablation.json")
  )!;
  const path = `${dir}/out/${sub.name}/${json.name}`;
  const first = JSON.parse(await Deno.readTextFile(path));
  assertEquals(first.rows.length, 3);
  const w8 = first.rows[1];
  assert(w8.psnr > 25 && w8.psnr < 80, `W8A8 PSNR ${w8.psnr}`);
  assert(w8.weight_bytes < first.rows[0].weight_bytes);
  // A rotated row records its layers' branches (ARS: hadamard or outlier, every quantized layer).
  assertEquals(w8.rotation_branches, undefined);
  const ars = first.rows[2].rotation_branches as Record<string, number>;
  const n = Object.values(ars).reduce((a, b) => a + b, 0);
  assertEquals(n, 20, JSON.stringify(ars));
  assert(Object.keys(ars).every((k) => k === "hadamard" || k === "outlier"), JSON.stringify(ars));
  // A resume with nothing left to run still writes its files (here under another --out).
  const again = [...args.slice(0, 2), "--out", `${dir}/out2`, ...args.slice(4), "cpu"];
  assertEquals(await ablation([...again, "--resume"]), 0);
  const copy = JSON.parse(await Deno.readTextFile(path.replace(`${dir}/out/`, `${dir}/out2/`)));
  assertEquals(copy.rows.length, 3);
  // Grow the matrix: resume keeps the reference and the W8A8 row, runs PARO alone.
  matrix.rows.push({ attention: "paro", density: 0.5, attn_bits: 8 } as never);
  await Deno.writeTextFile(file, JSON.stringify(matrix));
  // --name: the results file <date>_ablation_<name>, its chart linked by that name.
  assertEquals(await ablation([...args, "cpu", "--resume", "--name", "grown"]), 0);
  const named = path.replace(/_ablation\.json$/, "_ablation_grown.json");
  const second = JSON.parse(await Deno.readTextFile(named));
  assertEquals(second.rows.length, 4);
  assertEquals(second.rows[1].ms_step, w8.ms_step); // not re-measured
  assert(second.rows[3].psnr > 20, `PARO PSNR ${second.rows[3].psnr}`);
  assert(second.command.endsWith("--name grown"), second.command);
  for (const ext of ["md", "svg"]) assert(Deno.statSync(named.replace(/json$/, ext)).size > 100);
  const md = await Deno.readTextFile(named.replace(/json$/, "md"));
  assert(md.includes("_ablation_grown.svg)"), md);
  await assertRejects(() => ablation([...args, "cpu", "--name", "Bad Name"]), RangeError, "--name");
  await Deno.remove(dir, { recursive: true });
});
