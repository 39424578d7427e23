import { assert, assertEquals } from "../tests/assert.ts";
import { premiseResults } from "./rotation_premise.ts";

Deno.test("premiseResults: named figures per model and layer type, finite values only", () => {
  const r = premiseResults([
    {
      model: "/tmp/emoji-s-salient",
      type: "attn1 q/k/v input",
      J_median: 74.8,
      ratio_max: 7.27,
      over100x_max: 0,
      err_a8_none: 0.00988,
      err_a4_outlier: 0.0603,
    },
    { model: "models/emoji-s", type: "adaln_single", J_median: 3.45, ratio_max: NaN },
  ]);
  assertEquals(r.map((x) => x.name), [
    "act_j_median_emoji_s_salient_attn1_q_k_v_input",
    "act_ratio_max_emoji_s_salient_attn1_q_k_v_input",
    "act_over100x_max_emoji_s_salient_attn1_q_k_v_input",
    "act_err_a8_none_emoji_s_salient_attn1_q_k_v_input",
    "act_err_a4_outlier_emoji_s_salient_attn1_q_k_v_input",
    "act_j_median_emoji_s_adaln_single",
  ]);
  assertEquals(r[1], { name: r[1].name, value: 7.27, unit: "x", median_ms: 0, min_ms: 0 });
  assert(r.every((x) => /^[a-z0-9_]+$/.test(x.name)));
});
