import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import {
  blocksOf,
  type BlockStats,
  candidatePermutations,
  groupSteps,
  headScores,
  invertPermutation,
  keptMass,
  maskDensity,
  maskHas,
  maskWords,
  ParoPlan,
  type ParoStats,
  permutationByName,
  planKeptMass,
  planParo,
  selectMask,
  stepGroup,
  stepGroups,
  tileOrder,
} from "./paro_plan.ts";

const isPerm = (p: Uint32Array) => new Set(p).size === p.length && Math.max(...p) === p.length - 1;

Deno.test("candidate orders are permutations; tiles make 8×8 blocks; duplicates are dropped", () => {
  // On a 16-wide grid 4×16 tiles are whole rows, i.e. "hw": left out.
  const c = candidatePermutations(16, 16, { extended: true });
  assertEquals(c.map((x) => x.name), ["hw", "wh", "tile8x8_hw", "tile8x8_wh", "tile16x4_hw"]);
  assertEquals(candidatePermutations(32, 32, { extended: true }).length, 6);
  for (const x of c) {
    assert(isPerm(x.perm), x.name);
    assertEquals(Array.from(permutationByName(x.name, 16, 16)), Array.from(x.perm), x.name);
  }
  // Block 1 of tile8x8_hw (positions 64..127) is the 8×8 tile at rows 0..7, columns 8..15.
  const t = c[2].perm.subarray(64, 128);
  for (const tok of t) assert(Math.floor(tok / 16) < 8 && tok % 16 >= 8, `token ${tok}`);
  // wh: position i holds row i % h, column ⌊i / h⌋.
  assertEquals(Array.from(c[1].perm.subarray(0, 3)), [0, 16, 32]);
  // Ragged grids clip tiles; an 8-wide grid's 8×8 tiles in HW order equal hw.
  assert(isPerm(tileOrder(10, 13, 8, 8, true)));
  assertEquals(candidatePermutations(16, 8).map((x) => x.name), ["hw", "wh", "tile8x8_wh"]);
  const p = c[3].perm;
  const inv = invertPermutation(p);
  for (let i = 0; i < p.length; i++) assertEquals(inv[p[i]], i);
  assertThrows(() => permutationByName("zigzag", 4, 4), RangeError, "zigzag");
});

Deno.test("step groups: the first half own one each, the second half share one", () => {
  assertEquals(stepGroups(20), 11);
  assertEquals(stepGroups(1), 1);
  assertEquals([0, 1, 9, 10, 19].map((s) => stepGroup(s, 20, 20)), [0, 1, 9, 10, 10]);
  // A run with other step counts maps by relative position; outside sampling: the shared group.
  assertEquals([0, 1, 4, 5, 9].map((s) => stepGroup(s, 10, 20)), [0, 2, 8, 10, 10]);
  assertEquals(stepGroup(-1, 0, 20), 10);
  assertEquals(groupSteps(3, 20), [3]);
  assertEquals(groupSteps(10, 20), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  assertThrows(() => stepGroups(0), RangeError, "steps");
});

Deno.test("selectMask keeps the diagonal and the heaviest blocks up to the density", () => {
  const nb = 40; // two words per row
  const mass = new Float64Array(nb * nb);
  for (let i = 0; i < mass.length; i++) mass[i] = (i * 7919) % 1000;
  for (const d of [0.5, 0.3, 0.2]) {
    const bits = selectMask(mass, nb, d);
    assertEquals(bits.length, nb * maskWords(nb));
    assertAlmostEquals(maskDensity(bits, nb), Math.round(d * nb * nb) / (nb * nb), 1e-12);
    for (let b = 0; b < nb; b++) assert(maskHas(bits, nb, b, b), `diagonal ${b}`);
    // Every kept off-diagonal block outweighs every dropped one.
    let minKept = Infinity;
    let maxDropped = -Infinity;
    for (let q = 0; q < nb; q++) {
      for (let k = 0; k < nb; k++) {
        if (q === k) continue;
        const m = mass[q * nb + k];
        if (maskHas(bits, nb, q, k)) minKept = Math.min(minKept, m);
        else maxDropped = Math.max(maxDropped, m);
      }
    }
    assert(minKept >= maxDropped, `${minKept} < ${maxDropped}`);
  }
  // A density below the diagonal's keeps just the diagonal.
  assertAlmostEquals(maskDensity(selectMask(mass.subarray(0, 16), 4, 0.01), 4), 0.25, 1e-12);
  assertAlmostEquals(keptMass(selectMask([1, 5, 0, 2], 2, 0.75), 2, [1, 5, 0, 2]), 1, 1e-12);
  assertAlmostEquals(keptMass(selectMask([1, 5, 0, 2], 2, 0.5), 2, [1, 5, 0, 2]), 3 / 8, 1e-12);
  assertThrows(() => selectMask(mass, nb, 0), RangeError, "density");
  assertThrows(() => selectMask(mass, nb, 1.5), RangeError, "density");
});

/** Synthetic statistics: in layer 0 / head 0 "wh" is block-diagonal and sparse, the rest diffuse. */
function synthStats(steps: number): ParoStats {
  const h = 16, w = 16, nb = blocksOf(h * w);
  const candidates = ["hw", "wh", "tile8x8_hw"];
  const diffuse = (): BlockStats => ({
    mass: new Float64Array(nb * nb).fill(4096 / (nb * nb)),
    sparse: new Float64Array(nb * nb),
    incoherence: new Float64Array(nb * nb).fill(2),
  });
  const diag = (): BlockStats => {
    const s = diffuse();
    for (let i = 0; i < nb * nb; i++) {
      const on = Math.floor(i / nb) === i % nb || i === 1;
      s.mass[i] = on ? 900 : 10;
      s.sparse[i] = on ? 0 : 1;
      s.incoherence[i] = on ? 3 : 20;
    }
    return s;
  };
  const stats = [0, 1].map((l) =>
    [0, 1].map((hd) =>
      Array.from(
        { length: steps },
        () => candidates.map((c) => (l === 0 && hd === 0 && c === "wh" ? diag() : diffuse())),
      )
    )
  );
  return { h, w, layers: 2, heads: 2, steps, candidates, maps: 1, stats };
}

Deno.test("planParo picks the order with the lowest score and keeps its heavy blocks", () => {
  const s = synthStats(4);
  const sc = headScores(s, 0, 0, 1);
  assertEquals(sc.names, ["hw", "wh", "tile8x8_hw"]);
  assertAlmostEquals(sc.dense[1], 5 / 16, 1e-12); // 11 of 16 blocks sparse
  assertEquals(sc.score.indexOf(Math.min(...sc.score)), 1);
  // With α = 0 only incoherence counts, and the diffuse orders win.
  const s0 = headScores(s, 0, 0, 0);
  assertEquals(s0.score.indexOf(Math.min(...s0.score)), 0);
  const plan = planParo(s, { density: 5 / 16, bits: 8, alpha: 1 });
  assertEquals(plan.meta.orders, [["wh", "hw"], ["hw", "hw"]]);
  assertEquals(plan.meta.groups, 3);
  const m = plan.mask(0, 0, 2);
  assert(maskHas(m, 4, 0, 1), "the heavy off-diagonal block (0, 1) is kept");
  assertAlmostEquals(maskDensity(m, 4), 5 / 16, 1e-12);
  const kept = planKeptMass(plan, s);
  assertAlmostEquals(kept[0][0], (5 * 900) / (5 * 900 + 11 * 10), 1e-12);
  assertAlmostEquals(kept[1][1], 5 / 16, 1e-12);
  // Restricted to row-major, the structured head loses its structure.
  const hw = planParo(s, { density: 5 / 16, bits: 8, candidates: ["hw"] });
  assertAlmostEquals(planKeptMass(hw, s)[0][0], 5 / 16, 1e-12);
  assertThrows(() => planParo(s, { density: 0.3, bits: 6 as 8 }), RangeError, "bits");
  assertThrows(() => planParo(s, { density: 0.3, bits: 8, alpha: 2 }), RangeError, "alpha");
});

Deno.test("a plan survives its artifact tensors and metadata; corrupt ones are refused", () => {
  const plan = planParo(synthStats(3), { density: 0.5, bits: 4 });
  const t = plan.tensors();
  assertEquals(Object.keys(t).sort(), [
    "attention.paro.0.masks",
    "attention.paro.0.perm",
    "attention.paro.1.masks",
    "attention.paro.1.perm",
  ]);
  assertEquals(t["attention.paro.0.masks"].shape, [2, 2, 4, 1]);
  const meta = JSON.parse(JSON.stringify(plan.meta));
  const back = ParoPlan.fromTensors(meta, (n) => t[n].data);
  assertEquals(back.meta, plan.meta);
  assertEquals(Array.from(back.layers[1].masks), Array.from(plan.layers[1].masks));
  const bad = t["attention.paro.0.perm"].data.slice();
  bad[0] = bad[1];
  assertThrows(
    () => ParoPlan.fromTensors(meta, (n) => (n === "attention.paro.0.perm" ? bad : t[n].data)),
    RangeError,
    "not a permutation",
  );
  assertThrows(
    () => ParoPlan.fromTensors({ ...meta, tokens: 100 }, (n) => t[n].data),
    TypeError,
    "tokens",
  );
  assertThrows(() => ParoPlan.fromTensors({ method: "x" }, (n) => t[n].data), TypeError, "paro");
});
