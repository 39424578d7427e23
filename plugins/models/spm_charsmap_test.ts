import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { FIXTURES } from "../../tests/fixture_helpers.ts";
import { copyDir } from "../../tests/latent_models.ts";
import { HfTokenizer } from "./hf_tokenizer.ts";
import { SpmCharsmap } from "./spm_charsmap.ts";

/** tools/torch/make_tokenizer_truth.py: the SentencePiece and Rust tokenizers' ids. */
interface Truth {
  captions: string[];
  spiece: Record<string, number[][]>;
  fast: Record<string, number[][]>;
}

const truth = async () =>
  JSON.parse(await Deno.readTextFile(`${FIXTURES}text_tokenizer_truth.json`)) as Truth;

Deno.test("T5 tokenizers match SentencePiece (slow) and the Rust tokenizers (fast) on odd Unicode", async () => {
  const t = await truth();
  const check = async (dir: string, want: number[][], what: string) => {
    const tok = await HfTokenizer.load(dir);
    t.captions.forEach((c, i) =>
      assertEquals(tok.ids(c), want[i], `${what}: ${JSON.stringify(c)}`)
    );
  };
  // PixArt's folder has spiece.model only: read as the slow T5Tokenizer.
  await check(`${FIXTURES}text_pixart/tokenizer`, t.spiece.text_pixart, "PixArt spiece.model");
  // FLUX's tokenizer.json: the fast tokenizer (graphemes: "꟱́" is the first key's "S").
  await check(`${FIXTURES}text_flux/tokenizer_2`, t.fast.text_flux, "FLUX tokenizer.json");
  // The same folder without its tokenizer.json: the slow reading of its spiece.model.
  const dir = await Deno.makeTempDir({ prefix: "webdit_spiece_" });
  try {
    await copyDir(`${FIXTURES}text_flux/tokenizer_2`, dir);
    await Deno.remove(`${dir}/tokenizer.json`);
    await check(dir, t.spiece.text_flux, "FLUX spiece.model");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SpmCharsmap: the table's replacements; both readers; a cut blob is refused", async () => {
  const json = JSON.parse(
    await Deno.readTextFile(`${FIXTURES}text_flux/tokenizer_2/tokenizer.json`),
  );
  const map = SpmCharsmap.fromBase64(json.normalizer.normalizers[0].precompiled_charsmap);
  for (const reader of ["spm", "hf"] as const) {
    assertEquals(map.normalize("ﬁne ＡＢ ①", reader), "fine AB 1");
    assertEquals(map.normalize("x\u200dy", reader), "x\u200dy"); // the joiner stays
    assertEquals(map.normalize("e\u0301", reader), "é"); // composed
    assertEquals(map.normalize("tab\there", reader), "tab here");
  }
  // "꟱" and "꟱́" are both keys: SentencePiece takes the longest, the Rust crate the first.
  assertEquals(map.normalize("\ua7f1\u0301", "spm"), "Ś");
  assertEquals(map.normalize("\ua7f1\u0301", "hf"), "S");
  assertThrows(() => new SpmCharsmap(new Uint8Array(3)), RangeError, "header");
  assertThrows(() => new SpmCharsmap(Uint8Array.of(64, 0, 0, 0, 1, 2)), RangeError, "64 bytes");
});
