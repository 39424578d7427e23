import { assert, assertEquals } from "../tests/assert.ts";
import { quantWeightsFile, type Summary, summaryResults } from "./quant_weights.ts";

const summary: Summary = {
  model: "emoji-s",
  layers: 4,
  kurtosis_median: 3.1,
  tlq_wins_w3: 3,
  tlq_wins_w4: 2,
  tlq_mse_wins_w3: 4,
  tlq_mse_wins_w4: 1,
  sqnr_mean: { uniform_w3: 10, tlq_w3: 11 },
  int8_lut_error_mean_w4: 1e-3,
  bytes_f32: 1000,
  bytes: { uniform_w4a8: 200 },
  ms: { tlq_w3: 5 },
};

Deno.test("quant_weights: figures as figure rows of the results format", () => {
  const rows = summaryResults(summary);
  assertEquals(rows[0], {
    name: "quant_weights_emoji_s_tlq_wins_w3",
    value: 75,
    unit: "% of layers",
    median_ms: 0,
    min_ms: 0,
  });
  assert(rows.some((r) => r.name === "quant_weights_emoji_s_sqnr_tlq_w3" && r.value === 11));
  assert(rows.some((r) => r.name === "quant_weights_emoji_s_bytes_ratio_uniform_w4a8"));
  assert(
    rows.every((r) => /^[a-z0-9]+(_[a-z0-9]+)*$/.test(r.name)),
    rows.map((r) => r.name).join(),
  );
});

Deno.test("quant_weights: the file has the shared header and the summaries in extra", async () => {
  const f = await quantWeightsFile([summary], { commit: "abc1234", command: "x" });
  assertEquals([f.adapter, f.commit, f.command, f.deno], [
    "none (host)",
    "abc1234",
    "x",
    Deno.version.deno,
  ]);
  assert(f.device.startsWith("host CPU") && /^\d{4}-\d{2}-\d{2}$/.test(f.date));
  assertEquals(f.extra, { summaries: [summary] });
  assertEquals(f.results.length, summaryResults(summary).length);
});
