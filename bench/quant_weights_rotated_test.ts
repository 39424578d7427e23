import { assertEquals } from "../tests/assert.ts";
import { rotatedResults } from "./quant_weights_rotated.ts";

Deno.test("quant_weights_rotated: mean SQNR per variant, TLQ's wins as a share of layers", () => {
  const m = (a: number, b: number) => new Map([["l0", a], ["l1", b]]);
  const rows = rotatedResults("p", {
    uniform_w3: m(10, 12),
    tlq_w3: m(9, 11),
    tlq_mse_w3: m(11, 12), // ties do not count as wins
    uniform_w4: m(20, 20),
    tlq_w4: m(21, 19),
    tlq_mse_w4: m(21, 21),
  });
  const v = Object.fromEntries(rows.map((r) => [r.name, r.value]));
  assertEquals(v.p_sqnr_uniform_w3, 11);
  assertEquals(v.p_sqnr_tlq_mse_w3, 11.5);
  assertEquals(v.p_tlq_wins_w3, 0);
  assertEquals(v.p_tlq_mse_wins_w3, 50);
  assertEquals(v.p_tlq_wins_w4, 50);
  assertEquals(v.p_tlq_mse_wins_w4, 100);
  assertEquals(rows.find((r) => r.name === "p_tlq_wins_w4")!.unit, "% of layers");
});
