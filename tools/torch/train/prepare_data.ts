/**
 * Prepares the bundled emoji model's training data from the npm package
 * emoji-datasource-google@16.0.0 (Noto emoji artwork by Google, Apache-2.0).
 *
 * - images: every base emoji (no skin-tone variations) that has a Google 64×64 PNG, in
 *   `sort_order`; RGBA composited on white as out = round((c·a + 255·(255 − a)) / 255), u8 RGB;
 *   written as gzip'd raw bytes [N, 64, 64, 3] (`emoji64.u8.gz`);
 * - captions: word lists from the name, each short name and the name plus the subcategory
 *   (`emoji_meta.json`; the trainer samples the name half the time);
 * - tokenizer: NFKD, combining marks dropped, lowercase, runs of [a-z0-9]; the vocabulary is
 *   "<pad>", "<null>", "<unk>" and then every caption word in code-unit order (`vocab.json`);
 * - the prompt-fidelity list (`--prompts`): names spread evenly over every category, each
 *   exactly as the tokenizer splits it, one per line, names shared by two emoji left out.
 *
 * Usage (fetches the package with `npm pack` unless --src points at an unpacked one):
 *   deno run -A tools/torch/train/prepare_data.ts [--src DIR] [--out .train]
 *     [--prompts bench/prompts/emoji_fidelity.txt]
 *
 * @module
 */

import { decode } from "fast-png";
import { convertIndexedToRgb } from "fast-png";
import { gzipSync } from "node:zlib";

/** The npm package and version the data comes from. */
export const PACKAGE = "emoji-datasource-google@16.0.0";
/** Side of the square images. */
export const SIZE = 64;
/** Longest caption in tokens. */
export const MAX_LENGTH = 16;
/** Special tokens, ids 0, 1, 2. */
export const SPECIALS = ["<pad>", "<null>", "<unk>"] as const;

interface EmojiEntry {
  name: string | null;
  unified: string;
  image: string;
  short_names: string[];
  category: string;
  subcategory: string;
  sort_order: number;
  has_img_google: boolean;
}

/** The tokenizer's word split (shared with the runtime's caption tokenizer). */
export function words(text: string): string[] {
  const t = text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
  return t.match(/[a-z0-9]+/g) ?? [];
}

/** Composites one decoded PNG on white into RGB u8 (length SIZE·SIZE·3). */
export function compositeOnWhite(png: ReturnType<typeof decode>): Uint8Array {
  let data: ArrayLike<number> = png.data;
  let channels = png.channels;
  if (png.palette) {
    data = convertIndexedToRgb(png);
    channels = png.palette[0].length;
  }
  const shift = png.depth === 16 ? 8 : 0;
  const n = png.width * png.height;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const px = (k: number) => data[i * channels + k] >> shift;
    let r: number, g: number, b: number, a: number;
    if (channels === 4) [r, g, b, a] = [px(0), px(1), px(2), px(3)];
    else if (channels === 3) [r, g, b, a] = [px(0), px(1), px(2), 255];
    else if (channels === 2) [r, g, b, a] = [px(0), px(0), px(0), px(1)];
    else [r, g, b, a] = [px(0), px(0), px(0), 255];
    const mix = (c: number) => Math.round((c * a + 255 * (255 - a)) / 255);
    out[i * 3] = mix(r);
    out[i * 3 + 1] = mix(g);
    out[i * 3 + 2] = mix(b);
  }
  return out;
}

/** Caption variants of one emoji, as space-joined token strings, name first. */
export function captions(e: EmojiEntry): string[] {
  const name = words(e.name ?? "");
  const sub = words(e.subcategory);
  const out = [name.slice(0, MAX_LENGTH).join(" ")];
  for (const s of e.short_names) out.push(words(s).slice(0, MAX_LENGTH).join(" "));
  out.push([...name, ...sub].slice(0, MAX_LENGTH).join(" "));
  return [...new Set(out.filter((c) => c.length > 0))];
}

async function fetchPackage(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "emoji-src-" });
  const run = async (cmd: string, args: string[]) => {
    const r = await new Deno.Command(cmd, { args, cwd: dir, stderr: "inherit", stdout: "piped" })
      .output();
    if (!r.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
    return new TextDecoder().decode(r.stdout).trim();
  };
  const tgz = (await run("npm", ["pack", PACKAGE, "--silent"])).split("\n").pop()!;
  await run("tar", ["xzf", tgz]);
  return `${dir}/package`;
}

function arg(name: string, fallback: string | undefined): string | undefined {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1] : fallback;
}

/** Picks `k` emoji spread evenly over one category's list. */
function spread<T>(list: T[], k: number): T[] {
  if (list.length <= k) return list;
  return Array.from({ length: k }, (_, i) => list[Math.floor((i + 0.5) * list.length / k)]);
}

async function main() {
  const src = arg("src", undefined) ?? await fetchPackage();
  const outDir = arg("out", ".train")!;
  const promptsPath = arg("prompts", "bench/prompts/emoji_fidelity.txt")!;
  const all: EmojiEntry[] = JSON.parse(await Deno.readTextFile(`${src}/emoji.json`));
  const list = all.filter((e) => e.has_img_google && e.name).sort((a, b) =>
    a.sort_order - b.sort_order
  );
  const pixels = new Uint8Array(list.length * SIZE * SIZE * 3);
  const vocab = new Set<string>();
  const meta = [];
  for (const [i, e] of list.entries()) {
    const png = decode(await Deno.readFile(`${src}/img/google/64/${e.image}`));
    if (png.width !== SIZE || png.height !== SIZE) {
      throw new Error(`${e.image}: not ${SIZE}x${SIZE}`);
    }
    pixels.set(compositeOnWhite(png), i * SIZE * SIZE * 3);
    const caps = captions(e);
    for (const c of caps) for (const w of c.split(" ")) vocab.add(w);
    meta.push({
      index: i,
      unified: e.unified,
      image: e.image,
      name: caps[0],
      category: e.category,
      subcategory: e.subcategory,
      captions: caps,
    });
  }
  const vocabList = [...SPECIALS, ...[...vocab].sort()];
  await Deno.mkdir(outDir, { recursive: true });
  await Deno.writeFile(`${outDir}/emoji64.u8.gz`, gzipSync(pixels, { level: 9 }));
  await Deno.writeTextFile(`${outDir}/vocab.json`, JSON.stringify(vocabList) + "\n");
  await Deno.writeTextFile(
    `${outDir}/emoji_meta.json`,
    JSON.stringify({
      package: PACKAGE,
      licence: "Apache-2.0 (Noto emoji artwork by Google); emoji-datasource metadata MIT",
      count: list.length,
      size: SIZE,
      layout: "u8 [N, 64, 64, 3] RGB, composited on white, gzip",
      composite: "round((c*a + 255*(255-a)) / 255)",
      tokenizer: "NFKD, drop combining marks, lowercase, runs of [a-z0-9]; max_length 16",
      vocab_size: vocabList.length,
      emoji: meta,
    }) + "\n",
  );

  // Prompt list: names shared by two emoji, and images identical to another emoji's (e.g. the
  // French flag of St Martin and of Clipperton Island), are ambiguous for nearest-neighbour scoring.
  const nameCount = new Map<string, number>();
  for (const m of meta) nameCount.set(m.name, (nameCount.get(m.name) ?? 0) + 1);
  const imageKey = (i: number) =>
    pixels.subarray(i * SIZE * SIZE * 3, (i + 1) * SIZE * SIZE * 3).join();
  const imageCount = new Map<string, number>();
  for (const m of meta) {
    imageCount.set(imageKey(m.index), (imageCount.get(imageKey(m.index)) ?? 0) + 1);
  }
  const byCat = new Map<string, typeof meta>();
  for (const m of meta) {
    if (nameCount.get(m.name) !== 1 || imageCount.get(imageKey(m.index)) !== 1) continue;
    if (!byCat.has(m.category)) byCat.set(m.category, []);
    byCat.get(m.category)!.push(m);
  }
  const prompts: string[] = [];
  for (const [cat, ms] of byCat) {
    prompts.push(...spread(ms, cat === "Component" ? 3 : 13).map((m) => m.name));
  }
  await Deno.mkdir(promptsPath.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(promptsPath, prompts.join("\n") + "\n");
  console.error(
    `${list.length} emoji, vocabulary ${vocabList.length}, ${prompts.length} prompts over ${byCat.size} categories -> ${outDir}, ${promptsPath}`,
  );
}

if (import.meta.main) await main();
