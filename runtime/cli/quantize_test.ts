import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { parseAbitsOverride, parseLowRankOverride } from "./quantize_lists.ts";
import { UsageError } from "./common.ts";
import { type CliRun, runCli } from "../../tests/cli_helpers.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

/** Runs `deno run -A cli.ts <command> …args`. */
function cli(command: string, ...args: string[]): Promise<CliRun> {
  return runCli([command, ...args]);
}

function lastJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

Deno.test("quantize: usage errors exit 2 naming the option", async () => {
  const r = await cli("quantize", "--model", FIXTURE, "--quantizer", "tlq", "--wbits", "4");
  assertEquals(r.code, 2);
  assert(r.stderr.includes("--abits is required"), r.stderr);
  const r2 = await cli(
    "quantize",
    ...["--quantizer", "tlq", "--wbits", "4", "--abits", "5", "--out", "x.safetensors"],
  );
  assertEquals(r2.code, 2);
  assert(r2.stderr.includes("--abits must be one of 4, 6, 8, 16"), r2.stderr);
  const r3 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "tlq", "--wbits", "8", "--abits", "8"],
    ...["--out", "/tmp/never.safetensors"],
  );
  assertEquals(r3.code, 2);
  assert(r3.stderr.includes("--wbits must be one of 3, 4 for --quantizer tlq, got 8"), r3.stderr);
  const r4 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "tlq", "--wbits", "4", "--abits", "8"],
    ...["--abits-override", "*.to_q=16,*.ff.net.2=12", "--out", "/tmp/never.safetensors"],
  );
  assertEquals(r4.code, 2);
  assert(r4.stderr.includes('--abits-override: "*.ff.net.2=12" is not PATTERN=BITS'), r4.stderr);
  const r5 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8", "--gptq"],
    ...["--gptq-device", "tpu", "--out", "/tmp/never.safetensors"],
  );
  assertEquals(r5.code, 2);
  assert(r5.stderr.includes("--gptq-device"), r5.stderr);
  const r6 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8"],
    ...["--gptq-device", "gpu", "--out", "/tmp/never.safetensors"],
  );
  assertEquals(r6.code, 2);
  assert(r6.stderr.includes("--gptq-device needs --gptq"), r6.stderr);
  const r7 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "3", "--abits", "16"],
    ...["--tlq-fit", "mse", "--out", "/tmp/never.safetensors"],
  );
  assertEquals(r7.code, 2);
  assert(r7.stderr.includes("--tlq-fit applies to --quantizer tlq"), r7.stderr);
  const r8 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "tlq", "--wbits", "3", "--abits", "16"],
    ...["--tlq-fit", "best", "--out", "/tmp/never.safetensors"],
  );
  assertEquals(r8.code, 2);
  assert(r8.stderr.includes("--tlq-fit"), r8.stderr);
  const r9 = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "tlq", "--wbits", "3", "--abits", "16"],
    ...["--tlq-fit", "mse", "--tlq-assign", "log", "--out", "/tmp/never.safetensors"],
  );
  assertEquals(r9.code, 2);
  assert(r9.stderr.includes("no --tlq-assign log"), r9.stderr);
});

Deno.test("parseAbitsOverride: PATTERN=BITS entries in order", () => {
  assertEquals(parseAbitsOverride(undefined), undefined);
  assertEquals(parseAbitsOverride(" a.*=16, b=4 "), [
    { pattern: "a.*", abits: 16 },
    { pattern: "b", abits: 4 },
  ]);
});

Deno.test("parseLowRankOverride: PATTERN=R entries in order, R up to 128", () => {
  assertEquals(parseLowRankOverride(undefined), undefined);
  assertEquals(parseLowRankOverride("*.ff.*=64, *.attn1.*=0"), [
    { pattern: "*.ff.*", rank: 64 },
    { pattern: "*.attn1.*", rank: 0 },
  ]);
  assertThrows(() => parseLowRankOverride("a=129"), UsageError, "R an integer from 0 to 128");
  assertThrows(() => parseLowRankOverride(" , "), UsageError, "no PATTERN=R given");
});

Deno.test("quantize writes an artifact with --report and --json; generate runs it; no silent overwrite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_quant_" });
  const out = `${dir}/w4a8.safetensors`;
  const args = [
    ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8"],
    ...["--rotation", "none", "--attention", "dense", "--out", out],
  ];
  const r = await cli(
    "quantize",
    ...args,
    "--report",
    "--report-prompts",
    "1",
    "--report-steps",
    "1",
    "--json",
  );
  assertEquals(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  assertEquals(j.layers_quantized, 20);
  assertEquals(j.layers_fp, 7);
  // K = 32 here: the per-row parameters weigh as much as the 4-bit codes (1/3.97 of f32).
  assert((j.weight_bytes as number) * 3.5 < (j.weight_bytes_f32 as number), JSON.stringify(j));
  const layers = j.layers as {
    name: string;
    sqnr_db: number | null;
    act_rel_error: number | null;
  }[];
  const q = layers.find((l) => l.name === "transformer_blocks.0.ff.net.0.proj")!;
  assert(q.sqnr_db! > 15 && q.act_rel_error! > 0 && q.act_rel_error! < 0.05, JSON.stringify(q));
  assert(r.stderr.includes("SQNR dB") && r.stderr.includes("act err"), r.stderr);

  const again = await cli("quantize", ...args);
  assertEquals(again.code, 2);
  assert(again.stderr.includes("pass --force"), again.stderr);

  const png = `${dir}/apple.png`;
  const g = await cli(
    "generate",
    "--model",
    out,
    "--prompt",
    "red apple",
    "--steps",
    "2",
    "--out",
    png,
    "--json",
  );
  assertEquals(g.code, 0, g.stderr);
  assert((await Deno.stat(png)).size > 100);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("quantize on FLUX: the family's keep-FP default; calibration needs --calib-embeds", async () => {
  const flux = new URL("../../tests/fixtures/flux_dev", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_fluxq_" });
  const base = ["--model", flux, "--quantizer", "tlq", "--wbits", "4", "--abits", "8"];
  const r = await cli("quantize", ...base, "--out", `${dir}/a.safetensors`, "--json");
  assertEquals(r.code, 0, r.stderr);
  const j = lastJson(r.stdout);
  // x_embedder, context_embedder, 6 time_text_embed linears, norm_out.linear, proj_out.
  assertEquals([j.layers_quantized, j.layers_fp], [40, 10]);
  const miss = await cli(
    "quantize",
    ...base,
    "--rotation",
    "adaptive",
    "--out",
    `${dir}/b.safetensors`,
  );
  assertEquals(miss.code, 1);
  assert(miss.stderr.includes("--calib-embeds FILE"), miss.stderr);
  const both = await cli(
    "quantize",
    ...base,
    ...["--calib-prompts", "2", "--calib-embeds", `${flux}/io.safetensors`],
    ...["--out", `${dir}/c.safetensors`],
  );
  assertEquals(both.code, 2);
  assert(both.stderr.includes("not both"), both.stderr);
  const help = await cli("quantize", "--help");
  assert(help.stderr.includes("FLUX x_embedder,context_embedder"), help.stderr);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("quantize --calib-file and --gptq-damp reach the plan; misuse exits 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_calib_" });
  try {
    const file = `${dir}/prompts.txt`;
    await Deno.writeTextFile(file, "# two prompts\nred apple\n\nblue moon\n");
    await Deno.writeTextFile(`${dir}/empty.txt`, "# none\n\n");
    const base = ["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8"];
    const misuse: [string[], string][] = [
      [["--gptq-damp", "0.1"], "--gptq-damp needs --gptq"],
      [["--gptq", "--gptq-damp", "-1"], "--gptq-damp"],
      [["--gptq", "--gptq-damp", "Infinity"], "--gptq-damp must be a number"],
      [["--gptq", "--calib-file", `${dir}/missing.txt`], "--calib-file: no such file"],
      [["--gptq", "--calib-file", `${dir}/empty.txt`], "no prompt in it"],
      [["--gptq", "--calib-file", file, "--calib-prompts", "3"], `${file} has 2 prompts`],
      [["--gptq", "--calib-prompts", "321"], "calibration_320.txt has 320 prompts"],
    ];
    for (const [extra, msg] of misuse) {
      const r = await cli("quantize", ...base, ...extra, "--out", `${dir}/never.safetensors`);
      assertEquals(r.code, 2, `${extra.join(" ")}: ${r.stderr}`);
      assert(r.stderr.includes(msg), `${extra.join(" ")}: ${r.stderr}`);
    }
    // A prompt the model cannot read is named before any calibration runs.
    await Deno.writeTextFile(`${dir}/bad.txt`, "red apple\nrocket\n");
    const bad = await cli(
      "quantize",
      ...base,
      ...["--gptq", "--calib-file", `${dir}/bad.txt`, "--calib-steps", "1"],
      ...["--out", `${dir}/never.safetensors`],
    );
    assertEquals(bad.code, 1, bad.stderr);
    assert(bad.stderr.includes('calibration prompt 2 ("rocket"): No word'), bad.stderr);
    assert(!bad.stderr.includes("calibrating ["), bad.stderr);
    const out = `${dir}/gptq.safetensors`;
    const r = await cli(
      "quantize",
      ...base,
      ...["--gptq", "--gptq-damp", "0.05", "--gptq-device", "cpu", "--calib-file", file],
      ...["--calib-steps", "1", "--out", out],
    );
    assertEquals(r.code, 0, r.stderr);
    const f = await openSafetensors(out);
    const plan = JSON.parse(f.metadata["webdit.plan"]);
    f.close();
    assertEquals(plan.calibration.prompts, ["red apple", "blue moon"]);
    const damps = Object.values(plan.layers as Record<string, { meta?: { gptqDamp?: number } }>)
      .map((l) => l.meta?.gptqDamp).filter((d) => d !== undefined);
    assert(damps.length > 0);
    // 0.05, or ×10 steps up from it where H + λI was not positive definite.
    for (const d of damps) assert([0.05, 0.5, 5].some((v) => Math.abs(d! - v) < 1e-12), `${d}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("quantize: --tau, --rotation-override, --alpha and --no-smooth reach the plan; misuse exits 2", async () => {
  const base = ["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "8", "--abits", "8"];
  const misuse: [string[], string][] = [
    [["--tau", "2"], "apply to --rotation adaptive"],
    [["--rotation", "adaptive", "--rotation-override", "x=sideways"], "PATTERN=BRANCH"],
    [["--alpha", "0.5"], "apply to a rotation"],
    [["--rotation", "hadamard", "--alpha", "1.5"], "--alpha"],
    [["--rotation", "hadamard", "--alpha", "0.5", "--no-smooth"], "not both"],
    [["--rotation", "hadamard", "--ars-select", "error"], "apply to --rotation adaptive"],
    [["--rotation", "adaptive", "--ars-select", "best"], "--ars-select"],
    [["--rotation", "adaptive", "--ars-select", "error", "--tau", "2"], "--tau is the rms"],
    [["--rotation-seed", "3"], "apply to a rotation"],
    [["--rotation", "hadamard", "--rotation-seed", "-1"], "--rotation-seed"],
  ];
  for (const [extra, msg] of misuse) {
    const r = await cli("quantize", ...base, ...extra, "--out", "/tmp/never.safetensors");
    assertEquals(r.code, 2, `${extra.join(" ")}: ${r.stderr}`);
    assert(r.stderr.includes(msg), `${extra.join(" ")}: ${r.stderr}`);
  }

  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_rot_" });
  try {
    const out = `${dir}/ars.safetensors`;
    const r = await cli(
      "quantize",
      ...base,
      ...["--rotation", "adaptive", "--tau", "1000", "--alpha", "0.25", "--rotation-seed", "7"],
      ...["--rotation-override", "transformer_blocks.0.*=outlier"],
      ...["--calib-prompts", "1", "--calib-steps", "1", "--out", out],
    );
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("W8A8, adaptive rotation (smoothing α 0.25), "), r.stderr);
    const f = await openSafetensors(out);
    const plan = JSON.parse(f.metadata["webdit.plan"]);
    f.close();
    assertEquals(plan.calibration.rotationOptions, {
      tau: 1000,
      alpha: 0.25,
      seed: 7,
      overrides: { "transformer_blocks.0.*": "outlier" },
    });
    const layers = Object.entries(plan.layers) as [
      string,
      { rotation: string; meta?: Record<string, unknown> },
    ][];
    const quantized = layers.filter(([, l]) => l.rotation !== "none");
    assert(quantized.length > 0);
    for (const [name, l] of quantized) {
      const forced = name.startsWith("transformer_blocks.0.");
      assertEquals(l.rotation, forced ? "outlier" : "hadamard", name);
      const reason = String(l.meta?.rotReason);
      assert(forced ? reason === "override" : reason.includes("< τ 1000"), `${name}: ${reason}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("quantize --ars-select error: each layer keeps the branch of least error; --report shows it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_ars_" });
  try {
    const out = `${dir}/ars.safetensors`;
    const r = await cli(
      "quantize",
      ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "8", "--abits", "4"],
      ...["--rotation", "adaptive", "--ars-select", "error", "--act-group", "16", "--act-asym"],
      ...["--calib-prompts", "1", "--calib-steps", "1", "--report", "--report-prompts", "1"],
      ...["--report-steps", "1", "--json", "--out", out],
    );
    assertEquals(r.code, 0, r.stderr);
    assert(r.stderr.includes("err A4 g16 asym before"), r.stderr);
    const f = await openSafetensors(out);
    const plan = JSON.parse(f.metadata["webdit.plan"]);
    f.close();
    assertEquals(plan.calibration.rotationOptions, { select: "error" });
    const layers = Object.values(plan.layers) as {
      rotation: string;
      meta?: { rotReason?: string };
    }[];
    const chosen = layers.filter((l) => l.meta?.rotReason);
    assert(chosen.length > 0);
    for (const l of chosen) {
      assert(l.meta!.rotReason!.startsWith("least error (layer): "), l.meta!.rotReason);
    }
    const rows = lastJson(r.stdout).rotations as { err_before: number; err_after: number }[];
    assertEquals(rows.length, chosen.filter((l) => l.rotation !== "none").length);
    // "none" was a candidate measured the same way, so a kept rotation never does worse.
    for (const x of rows) assert(x.err_after <= x.err_before, JSON.stringify(x));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("quantize --center and --act-group: the plan and --json say so; --report measures them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_center_" });
  const run = async (name: string, ...extra: string[]) => {
    const r = await cli(
      "quantize",
      ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "8", "--abits", "4"],
      ...["--out", `${dir}/${name}.safetensors`, "--report", "--report-prompts", "1"],
      ...["--report-steps", "1", "--json", ...extra],
    );
    assertEquals(r.code, 0, r.stderr);
    const j = lastJson(r.stdout);
    const err = (n: string) =>
      (j.layers as { name: string; act_rel_error: number }[]).find((l) => l.name === n)!
        .act_rel_error;
    return { j, r, err };
  };
  const plain = await run("plain");
  const centred = await run("centred", "--center", "mean");
  assertEquals(plain.j.center, null);
  assertEquals(centred.j.center, "mean");
  assert(centred.r.stderr.includes("inputs centred by the mean"), centred.r.stderr);
  // ff.net.0's input is the adaLN-modulated LayerNorm: the shift is a per-sample offset.
  const n = "transformer_blocks.0.ff.net.0.proj";
  assert(centred.err(n) < plain.err(n), `centred ${centred.err(n)} vs plain ${plain.err(n)}`);
  const bad = await cli(
    "quantize",
    ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8"],
    ...["--center", "median", "--out", `${dir}/bad.safetensors`],
  );
  assertEquals(bad.code, 2);
  assert(bad.stderr.includes("--center"), bad.stderr);
  // Activation groups: the plan and --json say so, the report measures the grouped error.
  const grouped = await run("grouped", "--act-group", "32");
  assertEquals([plain.j.act_group, grouped.j.act_group], [null, 32]);
  assert(grouped.r.stderr.includes("a scale per 32 channels"), grouped.r.stderr);
  const asym = await run("asym", "--act-group", "32", "--act-asym");
  assertEquals([grouped.j.act_asym, asym.j.act_asym], [false, true]);
  assert(asym.r.stderr.includes("an asymmetric scale per 32 channels"), asym.r.stderr);
  const n2 = "transformer_blocks.0.ff.net.2";
  assert(grouped.err(n2) < plain.err(n2), `grouped ${grouped.err(n2)} vs ${plain.err(n2)}`);
  const cfgd = await run("cfgd", "--cfg-delta");
  assertEquals([plain.j.cfg_delta, cfgd.j.cfg_delta], [false, true]);
  assert(cfgd.r.stderr.includes("(CFG delta)"), cfgd.r.stderr);
  // The report quantizes what the plan does: the guided calls' [u; c − u], whose second half
  // (the small difference) has its own finer scales.
  const n1 = "transformer_blocks.1.attn1.to_q";
  assert(cfgd.err(n1) < plain.err(n1), `CFG delta ${cfgd.err(n1)} vs plain ${plain.err(n1)}`);
  // Weight groups on the integer path (MODE 7): the plan and --json say so.
  const wg = await run("wg", "--group-size", "32");
  assertEquals([plain.j.group_size, wg.j.group_size], [0, 32]);
  assert(wg.r.stderr.includes("W8A4 (weights in groups of 32)"), wg.r.stderr);
  for (
    const [args, msg] of [[["--act-group", "24"], "multiple of 16"], [
      ["--act-asym"],
      "--act-asym needs --act-group",
    ], [[
      "--abits",
      "16",
      "--act-group",
      "32",
    ], "needs --abits"], [["--abits", "16", "--cfg-delta"], "--cfg-delta needs --abits"]] as const
  ) {
    const r = await cli(
      "quantize",
      ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8"],
      ...args,
      ...["--out", `${dir}/bad.safetensors`],
    );
    assertEquals(r.code, 2, r.stderr);
    assert(r.stderr.includes(msg), r.stderr);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("quantize --quantizer tlq --group-size: the plan says so; percentile grids get a note", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_tlqg_" });
  try {
    const run = async (name: string, ...extra: string[]) => {
      const r = await cli(
        "quantize",
        ...["--model", FIXTURE, "--quantizer", "tlq", "--wbits", "4", "--abits", "8"],
        ...["--group-size", "16", "--json", "--out", `${dir}/${name}.safetensors`, ...extra],
      );
      assertEquals(r.code, 0, r.stderr);
      return r;
    };
    const plain = await run("percentile");
    assert(plain.stderr.includes("Add --tlq-fit mse"), plain.stderr);
    const mse = await run("mse", "--tlq-fit", "mse");
    assert(!mse.stderr.includes("Add --tlq-fit mse"), mse.stderr);
    assert(mse.stderr.includes("(weights in groups of 16)"), mse.stderr);
    const bad = await cli(
      "quantize",
      ...["--model", FIXTURE, "--quantizer", "tlq", "--wbits", "4", "--abits", "16"],
      ...["--group-size", "24", "--out", `${dir}/bad.safetensors`],
    );
    assert(bad.code !== 0 && bad.stderr.includes("tlq groups must divide K = 32"), bad.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("quantize --low-rank: the plan and --json say so; bad ranks are named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_lowrank_" });
  try {
    const run = (...extra: string[]) =>
      cli(
        "quantize",
        ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "8"],
        ...["--json", "--out", `${dir}/m.safetensors`, "--force", ...extra],
      );
    const r = await run(
      "--low-rank",
      "8",
      "--report",
      "--report-prompts",
      "1",
      "--report-steps",
      "1",
    );
    assertEquals(r.code, 0, r.stderr);
    const j = lastJson(r.stdout);
    assertEquals(j.low_rank, 8);
    assertEquals(j.low_rank_fit, "refit"); // the default without --gptq
    assert(r.stderr.includes("(a rank-8 float branch a layer, refitted to the codes)"), r.stderr);
    // The report: each quantized layer's share held by the branch (a fraction of its weight).
    assert(r.stderr.includes("branch %"), r.stderr);
    const shares = (j.layers as { quantizer: string; low_rank_energy?: number }[])
      .filter((l) => l.quantizer !== "fp").map((l) => l.low_rank_energy ?? NaN);
    assert(shares.length > 0 && shares.every((e) => e > 0 && e < 1), `${shares}`);
    const neg = await run("--low-rank", "-1");
    assertEquals(neg.code, 2, neg.stderr);
    assert(neg.stderr.includes("--low-rank must be in [0, 128], got -1"), neg.stderr);
    const big = await run("--low-rank", "200");
    assertEquals(big.code, 2, big.stderr);
    assert(big.stderr.includes("--low-rank must be in [0, 128], got 200"), big.stderr);
    // Per-layer ranks: --json lists the overrides and each layer's rank; the wrote line counts them.
    const o = await run(
      ...["--low-rank", "4", "--low-rank-override", "*.ff.*=8,*.attn2.*=0", "--report"],
      ...["--report-prompts", "1", "--report-steps", "1"],
    );
    assertEquals(o.code, 0, o.stderr);
    // The report's rank column: each layer's own.
    const rankOf = (layer: string) =>
      o.stderr.split("\n").find((l) => l.startsWith(layer + " "))?.trim().split(/\s+/).at(-2);
    assertEquals(rankOf("transformer_blocks.0.ff.net.2"), "8");
    assertEquals(rankOf("transformer_blocks.0.attn2.to_k"), "-");
    assertEquals(rankOf("transformer_blocks.0.attn1.to_k"), "4");
    const jo = lastJson(o.stdout);
    const layersJ = jo.layers as { name: string; low_rank?: number }[];
    assertEquals(layersJ.find((l) => l.name === "transformer_blocks.0.ff.net.2")?.low_rank, 8);
    assertEquals(
      layersJ.find((l) => l.name === "transformer_blocks.0.attn2.to_k")?.low_rank,
      undefined,
    );
    assertEquals(jo.low_rank_override, [
      { pattern: "*.ff.*", rank: 8 },
      { pattern: "*.attn2.*", rank: 0 },
    ]);
    assert(/float branches: \d+ of rank 8, \d+ of rank 4, refitted/.test(o.stderr), o.stderr);
    // The fit: svd keeps SVDQuant's split; hessian needs --gptq; any needs a branch.
    const svd = await run("--low-rank", "4", "--low-rank-fit", "svd");
    assertEquals(svd.code, 0, svd.stderr);
    assertEquals(lastJson(svd.stdout).low_rank_fit, "svd");
    assert(svd.stderr.includes("(a rank-4 float branch a layer)"), svd.stderr);
    const misuse: [string[], string][] = [
      [["--low-rank", "4", "--low-rank-fit", "hessian"], "--low-rank-fit hessian needs --gptq"],
      [["--low-rank-fit", "refit"], "--low-rank-fit needs --low-rank"],
      [["--low-rank", "4", "--low-rank-fit", "qr"], "--low-rank-fit"],
    ];
    for (const [args, msg] of misuse) {
      const e = await run(...args);
      assertEquals(e.code, 2, e.stderr);
      assert(e.stderr.includes(msg), e.stderr);
    }
    const bad = await run("--low-rank-override", "*.ff.*=x");
    assertEquals(bad.code, 2, bad.stderr);
    assert(bad.stderr.includes('--low-rank-override: "*.ff.*=x" is not PATTERN=R'), bad.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
