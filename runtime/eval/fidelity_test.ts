import { gzipSync } from "node:zlib";
import {
  assert,
  assertAlmostEquals,
  assertEquals,
  assertRejects,
  assertThrows,
} from "../../tests/assert.ts";
import { CheckpointError } from "../errors.ts";
import { DEFAULT_PROMPTS_FILE, parsePromptList, type SampleSet, scoreFidelity } from "./eval.ts";
import {
  compositeOnWhite,
  EMOJI_SIZE,
  type EmojiDataset,
  loadEmojiDataset,
  promptTarget,
  scoreImage,
  summarizeFidelity,
  untar,
} from "./fidelity.ts";

const N = EMOJI_SIZE * EMOJI_SIZE * 3;

/** A dataset of flat-colour "emoji". */
function flatDataset(entries: [string, string, number][]): EmojiDataset {
  const pixels = new Uint8Array(entries.length * N);
  const byName = new Map<string, number[]>();
  entries.forEach(([name, , v], i) => {
    pixels.fill(v, i * N, (i + 1) * N);
    byName.set(name, [...(byName.get(name) ?? []), i]);
  });
  return {
    source: "test",
    entries: entries.map(([name, category], index) => ({
      index,
      name,
      unified: "",
      image: "",
      category,
      subcategory: "",
    })),
    pixels,
    byName,
  };
}

const DS = flatDataset([
  ["red apple", "Food", 40],
  ["green apple", "Food", 100],
  ["grinning face", "Smileys", 200],
  ["twin", "Smileys", 150],
  ["twin", "Smileys", 160],
  ["copy", "Symbols", 200], // the same image as "grinning face"
]);

Deno.test("compositeOnWhite: alpha over white, rounded; gray and RGB", () => {
  const rgba = {
    width: 2,
    height: 1,
    channels: 4,
    data: new Uint8Array([10, 20, 30, 0, 10, 20, 30, 128]),
  };
  // a = 128: round((c·128 + 255·127) / 255).
  const m = (c: number) => Math.round((c * 128 + 255 * 127) / 255);
  assertEquals(Array.from(compositeOnWhite(rgba)), [255, 255, 255, m(10), m(20), m(30)]);
  const ga = { width: 1, height: 1, channels: 2, data: new Uint8Array([0, 255]) };
  assertEquals(Array.from(compositeOnWhite(ga)), [0, 0, 0]);
  const rgb = { width: 1, height: 1, channels: 3, data: new Uint8Array([1, 2, 3]) };
  assertEquals(Array.from(compositeOnWhite(rgb)), [1, 2, 3]);
});

Deno.test("promptTarget: exactly one emoji by the tokenizer's words", () => {
  assertEquals(promptTarget(DS, "Red  Apple!"), 0);
  assert(String(promptTarget(DS, "twin")).includes("names 2"));
  assert(String(promptTarget(DS, "blue apple")).includes("no dataset emoji"));
});

Deno.test("scoreImage: nearest by pixel MSE; ties with an identical image count", () => {
  const img = new Uint8Array(N).fill(90); // nearest: green apple (100)
  const h = scoreImage(DS, img, 0, "red apple", 5);
  assertEquals([h.nearest, h.hit, h.seed], [1, false, 5]);
  assertAlmostEquals(h.mseTarget, 50 * 50, 0);
  assertAlmostEquals(h.mseNearest, 10 * 10, 0);
  assertEquals(scoreImage(DS, new Uint8Array(N).fill(60), 0).hit, true);
  // 199 is equally near "grinning face" (index 2) and its copy (5): a hit for either.
  const t = new Uint8Array(N).fill(199);
  assertEquals([scoreImage(DS, t, 2).hit, scoreImage(DS, t, 5).hit], [true, true]);
  assertEquals(scoreImage(DS, t, 2).nearest, 2);
  assertThrows(() => scoreImage(DS, new Uint8Array(12), 0), RangeError, "64×64");
});

Deno.test("summarizeFidelity / scoreFidelity: share of hits, per category", () => {
  const img = (v: number) => ({
    width: 64,
    height: 64,
    channels: 3,
    data: new Uint8Array(N).fill(v),
  });
  const set: SampleSet = {
    model: "m",
    prompts: ["red apple", "grinning face"],
    seeds: [0, 1],
    steps: 20,
    guidance: 4.5,
    sampler: "dpm++2m",
    shape: [3, 64, 64],
    batch: 1,
    unknownWords: [],
    ms: 0,
    steadyStepMs: NaN,
    samples: [
      { prompt: "red apple", seed: 0, latents: new Float32Array(0), image: img(41) }, // hit
      { prompt: "red apple", seed: 1, latents: new Float32Array(0), image: img(99) }, // miss
      { prompt: "grinning face", seed: 0, latents: new Float32Array(0), image: img(210) }, // hit
      { prompt: "grinning face", seed: 1, latents: new Float32Array(0), image: img(170) }, // miss
    ],
  };
  const r = scoreFidelity(set, DS);
  assertEquals([r.fidelity, r.hits, r.total], [50, 2, 4]);
  assertEquals(r.perCategory, { Food: 50, Smileys: 50 });
  assertEquals(r.images.map((h) => h.nearest), [0, 1, 2, 4]);
  assertEquals(r.images.map((h) => h.nearestName), [
    "red apple",
    "green apple",
    "grinning face",
    "twin",
  ]);
  assertEquals(r.perCategoryCounts, { Food: [1, 2], Smileys: [1, 2] });
  const three = summarizeFidelity(DS, r.images.slice(0, 3));
  assertAlmostEquals(three.fidelity, 66.67, 0);
  assertThrows(() => scoreFidelity({ ...set, prompts: ["twin"] }, DS), RangeError, "names 2");
  assertThrows(() => scoreFidelity({ ...set, shape: [3, 16, 16] }, DS), RangeError, "64×64");
});

Deno.test("loadEmojiDataset: the training data from the npm registry; the prompt list resolves", async () => {
  const ds = await loadEmojiDataset();
  // The 1,911 base emoji of emoji-datasource-google@16.0.0, as tools/torch/train/prepare_data.ts.
  assertEquals(ds.entries.length, 1911);
  assertEquals(ds.pixels.length, 1911 * N);
  assertEquals(ds.entries[0].name, "grinning face");
  const prompts = parsePromptList(await Deno.readTextFile(DEFAULT_PROMPTS_FILE));
  assertEquals(prompts.length, 120);
  const cats = new Set<string>();
  const images = new Map<string, number>();
  for (let i = 0; i < ds.entries.length; i++) {
    const key = ds.pixels.subarray(i * N, (i + 1) * N).join();
    images.set(key, (images.get(key) ?? 0) + 1);
  }
  for (const [k, p] of prompts.entries()) {
    const t = promptTarget(ds, p);
    assert(typeof t === "number", String(t));
    cats.add(ds.entries[t].category);
    // No other emoji has the prompted one's image, so that image is its own unique nearest.
    assertEquals(images.get(ds.pixels.subarray(t * N, (t + 1) * N).join()), 1, p);
    if (k % 12 === 0) {
      const h = scoreImage(ds, ds.pixels.subarray(t * N, (t + 1) * N), t);
      assert(h.hit && h.nearest === t && h.mseTarget === 0, p);
    }
  }
  assertEquals(cats.size, 10);
  // Some emoji do share an image (why the list leaves them out).
  assert([...images.values()].some((c) => c > 1), "expected duplicate images in the dataset");
});

Deno.test("loadEmojiDataset: the folder prepare_data.ts writes (emoji_meta.json + gzip'd pixels)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const emoji = DS.entries.slice(0, 3).map((e) => ({
      index: e.index,
      unified: `U${e.index}`,
      image: `${e.index}.png`,
      name: e.name,
      category: e.category,
      subcategory: "sub",
    }));
    const meta = { package: "emoji-datasource-google@16.0.0", count: 3, size: 64, emoji };
    await Deno.writeTextFile(`${dir}/emoji_meta.json`, JSON.stringify(meta));
    await Deno.writeFile(`${dir}/emoji64.u8.gz`, gzipSync(DS.pixels.subarray(0, 3 * N)));
    const ds = await loadEmojiDataset(dir);
    assertEquals(ds.entries.map((e) => e.name), ["red apple", "green apple", "grinning face"]);
    assertEquals(ds.pixels, DS.pixels.subarray(0, 3 * N));
    assertEquals(promptTarget(ds, "Green Apple"), 1);
    // Pixels that do not match the list, and a list of another package, are named errors.
    await Deno.writeFile(`${dir}/emoji64.u8.gz`, gzipSync(DS.pixels.subarray(0, 2 * N)));
    await assertRejects(() => loadEmojiDataset(dir), CheckpointError, "emoji64.u8.gz");
    await Deno.writeTextFile(`${dir}/emoji_meta.json`, JSON.stringify({ ...meta, size: 32 }));
    await assertRejects(() => loadEmojiDataset(dir), CheckpointError, "emoji_meta.json");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** One tar header block (ustar) for `name` of `size` bytes and type `type`. */
function tarHeader(name: string, size: number, type: string, prefix = ""): Uint8Array {
  const h = new Uint8Array(512);
  const put = (s: string, off: number) => h.set(new TextEncoder().encode(s), off);
  put(name, 0);
  put(size.toString(8).padStart(11, "0"), 124);
  put(type, 156);
  put("ustar\0" + "00", 257);
  put(prefix, 345);
  return h;
}

function tarOf(parts: [Uint8Array, Uint8Array][]): Uint8Array {
  const blocks: Uint8Array[] = [];
  for (const [h, d] of parts) {
    blocks.push(h);
    const padded = new Uint8Array(Math.ceil(d.length / 512) * 512);
    padded.set(d);
    blocks.push(padded);
  }
  blocks.push(new Uint8Array(1024));
  const out = new Uint8Array(blocks.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const b of blocks) (out.set(b, o), o += b.length);
  return out;
}

Deno.test("untar: plain, ustar prefix, pax path and GNU long names; directories skipped", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const long = "package/" + "x".repeat(120) + ".png";
  const pax = enc(`${(" path=" + long + "\n").length + 3} path=${long}\n`);
  const tar = tarOf([
    [tarHeader("package/", 0, "5"), new Uint8Array(0)],
    [tarHeader("package/emoji.json", 2, "0"), enc("[]")],
    [tarHeader("a.png", 600, "0", "package/img/google/64"), new Uint8Array(600).fill(7)],
    [tarHeader("PaxHeader", pax.length, "x"), pax],
    [tarHeader("short-name", 1, "0"), enc("p")],
    [tarHeader("././@LongLink", long.length + 1, "L"), enc(long + "\0")],
    [tarHeader("cut", 1, "0"), enc("g")],
  ]);
  const files = untar(tar);
  assertEquals(files.map((f) => f.name), [
    "package/emoji.json",
    "package/img/google/64/a.png",
    long,
    long,
  ]);
  assertEquals(new TextDecoder().decode(files[0].data), "[]");
  assertEquals([files[1].data.length, files[1].data[599]], [600, 7]);
  assertEquals([files[2].data[0], files[3].data[0]], [112, 103]);
  assertThrows(() => untar(tar.subarray(0, 2048 + 100)), RangeError, "bad entry size");
});
