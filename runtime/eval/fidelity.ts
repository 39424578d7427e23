/**
 * Prompt fidelity of the bundled emoji model: the share of generated images whose nearest
 * dataset emoji (pixel MSE at 64×64, RGB on white) is the prompted one.
 *
 * The dataset is the one the model was trained on (tools/torch/train/prepare_data.ts): every
 * emoji of the npm package emoji-datasource-google@16.0.0 with a name and a Google 64×64 PNG
 * (the 1,911 base emoji, no skin-tone variations), in `sort_order`, each RGBA PNG composited
 * on white as round((c·a + 255·(255 − a)) / 255). A prompt is an emoji's name split into the
 * tokenizer's words ("grinning face"); it must name exactly one emoji. Ties count as hits
 * (an image equally near the prompted emoji and another one), as in tools/torch/train/finish.py.
 *
 * The package is downloaded from the npm registry the first time fidelity is scored and its
 * 64×64 images and emoji.json (23 MiB) are kept in a cache (see {@linkcode emojiPackageDir});
 * pass `dir` (an unpacked package: emoji.json + img/google/64/, or the training-data folder
 * tools/torch/train/prepare_data.ts writes) to work offline.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { words } from "../../plugins/models/emoji_tokenizer.ts";
import { CheckpointError } from "../errors.ts";
import { exists } from "../io/fs.ts";
import { decodePng, type Image } from "../io/png.ts";

/** The npm package the dataset comes from. */
export const EMOJI_PACKAGE = "emoji-datasource-google@16.0.0";
/** Side of the dataset images. */
export const EMOJI_SIZE = 64;
/** Longest name in tokens (the tokenizer's max_length). */
const MAX_WORDS = 16;

/** One dataset emoji. */
export interface EmojiEntry {
  /** Position in the dataset (sort_order rank). */
  index: number;
  /** The name as the tokenizer splits it ("grinning face"). */
  name: string;
  /** Code points, e.g. "1F600". */
  unified: string;
  /** The PNG's file name. */
  image: string;
  /** emoji.json's category. */
  category: string;
  /** emoji.json's subcategory. */
  subcategory: string;
}

/** The dataset in memory. */
export interface EmojiDataset {
  /** Where it was read from. */
  source: string;
  /** The emoji, by index. */
  entries: EmojiEntry[];
  /** RGB u8 pixels [N, 64, 64, 3], composited on white. */
  pixels: Uint8Array;
  /** Dataset indices by name (a name may be shared). */
  byName: Map<string, number[]>;
}

interface RawEntry {
  name: string | null;
  unified: string;
  image: string;
  category: string;
  subcategory: string;
  sort_order: number;
  has_img_google: boolean;
}

/** Composites an 8-bit image (gray, gray+alpha, RGB or RGBA) on white → RGB u8. */
export function compositeOnWhite(img: Image): Uint8Array {
  const n = img.width * img.height;
  const ch = img.channels;
  const d = img.data;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const p = i * ch;
    const a = ch === 4 ? d[p + 3] : ch === 2 ? d[p + 1] : 255;
    for (let c = 0; c < 3; c++) {
      const v = ch >= 3 ? d[p + c] : d[p];
      out[i * 3 + c] = Math.round((v * a + 255 * (255 - a)) / 255);
    }
  }
  return out;
}

/** The package tarball's integrity as the npm registry publishes it (dist.integrity). */
export const EMOJI_PACKAGE_INTEGRITY =
  "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==";

/** One file of a tar archive. */
export interface TarEntry {
  /** Path inside the archive. */
  name: string;
  /** Its bytes (a view into the archive). */
  data: Uint8Array;
}

function tarString(b: Uint8Array, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const end = s.indexOf(0);
  return new TextDecoder().decode(end < 0 ? s : s.subarray(0, end));
}

/** The regular files of an (uncompressed) ustar/pax/GNU tar archive, in order. */
export function untar(tar: Uint8Array): TarEntry[] {
  const out: TarEntry[] = [];
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const size = parseInt(tarString(h, 124, 12).trim() || "0", 8);
    const type = String.fromCharCode(h[156] || 48);
    if (!Number.isFinite(size) || size < 0 || off + 512 + size > tar.length) {
      throw new RangeError(`tar: bad entry size at byte ${off}`);
    }
    const data = tar.subarray(off + 512, off + 512 + size);
    const prefix = tarString(h, 345, 155);
    let name = prefix ? `${prefix}/${tarString(h, 0, 100)}` : tarString(h, 0, 100);
    if (type === "x" || type === "L") {
      // pax extended header (path=…) or GNU long name: applies to the next entry.
      const text = new TextDecoder().decode(data);
      longName = type === "L" ? text.replace(/\0.*$/s, "") : text.match(/\d+ path=([^\n]*)\n/)?.[1];
    } else {
      if (longName) name = longName;
      longName = undefined;
      if (type === "0" || type === "7") out.push({ name, data });
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** Where fetched data is kept: WEBDIT_CACHE_DIR, else $XDG_CACHE_HOME/webdit or ~/.cache/webdit. */
export function cacheDir(): string {
  const env = Deno.env.get("WEBDIT_CACHE_DIR");
  if (env) return env;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? ".";
  return join(xdg || join(home, ".cache"), "webdit");
}

/**
 * The folder of the dataset files (emoji.json + img/google/64/): an installed copy of the
 * package in the repository's node_modules, else the cache, else downloaded once from the npm
 * registry (NPM_CONFIG_REGISTRY, default registry.npmjs.org), checked against the published
 * sha-512, and only those files unpacked into the cache. Not through an `npm:` import: that
 * would put the 82 MiB package in deno.lock, and Deno installs every lockfile package on
 * every command's first run.
 */
export async function emojiPackageDir(): Promise<string> {
  const repo = fileURLToPath(new URL("../../node_modules/", import.meta.url));
  for (
    const d of [
      join(repo, "emoji-datasource-google"),
      join(repo, ".deno", EMOJI_PACKAGE, "node_modules", "emoji-datasource-google"),
    ]
  ) {
    const pkg = await Deno.readTextFile(join(d, "package.json")).then(JSON.parse, () => null);
    if (pkg?.version === EMOJI_PACKAGE.split("@")[1]) return d;
  }
  const dir = join(cacheDir(), EMOJI_PACKAGE);
  if (await exists(join(dir, ".complete"))) return dir;
  const registry = (Deno.env.get("NPM_CONFIG_REGISTRY") ?? Deno.env.get("npm_config_registry") ??
    "https://registry.npmjs.org/").replace(/\/?$/, "/");
  const [name, version] = EMOJI_PACKAGE.split("@");
  const url = `${registry}${name}/-/${name}-${version}.tgz`;
  let tgz: Uint8Array<ArrayBuffer>;
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    tgz = new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new CheckpointError(
      url,
      `cannot download the emoji dataset (${(e as Error).message}); ` +
        `pass the folder of an unpacked ${EMOJI_PACKAGE} instead (--dataset)`,
    );
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", tgz));
  const got = "sha512-" + btoa(String.fromCharCode(...digest));
  if (got !== EMOJI_PACKAGE_INTEGRITY) {
    throw new CheckpointError(url, `integrity mismatch: got ${got}`);
  }
  const tmp = `${dir}.tmp-${Deno.pid}`;
  await Deno.mkdir(join(tmp, "img", "google", String(EMOJI_SIZE)), { recursive: true });
  const want = new RegExp(`^package/(emoji\\.json|img/google/${EMOJI_SIZE}/[^/]+\\.png)$`);
  for (const e of untar(gunzipSync(tgz))) {
    const m = e.name.match(want);
    if (m) await Deno.writeFile(join(tmp, m[1]), e.data);
  }
  if (!(await exists(join(tmp, "emoji.json")))) {
    throw new CheckpointError(url, "the package has no emoji.json");
  }
  await Deno.writeTextFile(join(tmp, ".complete"), `${url}\n${got}\n`);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, dir);
  return dir;
}

/**
 * Loads the dataset: emoji.json and img/google/64/*.png from `dir` (an unpacked
 * emoji-datasource-google@16.0.0) or the folder tools/torch/train/prepare_data.ts writes
 * (emoji_meta.json + emoji64.u8.gz), or from the npm package when `dir` is not given.
 */
export async function loadEmojiDataset(dir?: string): Promise<EmojiDataset> {
  const root = dir ?? await emojiPackageDir();
  if (dir && await exists(join(dir, PREPARED_META)) && !await exists(join(dir, "emoji.json"))) {
    return await loadPreparedDataset(dir);
  }
  const metaPath = join(root, "emoji.json");
  let raw: RawEntry[];
  try {
    raw = JSON.parse(await Deno.readTextFile(metaPath));
  } catch (e) {
    throw new CheckpointError(metaPath, `cannot read the emoji list: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw)) throw new CheckpointError(metaPath, "expected a JSON array");
  const list = raw.filter((e) => e.has_img_google && e.name).sort((a, b) =>
    a.sort_order - b.sort_order
  );
  const S = EMOJI_SIZE;
  const pixels = new Uint8Array(list.length * S * S * 3);
  const ds: EmojiDataset = { source: root, entries: [], pixels, byName: new Map() };
  for (const [i, e] of list.entries()) {
    const file = join(root, "img", "google", String(S), e.image);
    const img = decodePng(await Deno.readFile(file), file);
    if (img.width !== S || img.height !== S) {
      throw new CheckpointError(file, `expected ${S}×${S}, got ${img.width}×${img.height}`);
    }
    pixels.set(compositeOnWhite(img), i * S * S * 3);
    addEntry(ds, i, { ...e, name: e.name! });
  }
  return ds;
}

/** The prepared training data's list and pixels (tools/torch/train/prepare_data.ts). */
const PREPARED_META = "emoji_meta.json";
const PREPARED_PIXELS = "emoji64.u8.gz";

interface PreparedMeta {
  package?: string;
  count?: number;
  size?: number;
  emoji?: {
    index: number;
    unified: string;
    image: string;
    name: string;
    category: string;
    subcategory: string;
  }[];
}

/**
 * Loads the dataset from the folder tools/torch/train/prepare_data.ts writes (emoji_meta.json
 * and the gzip'd u8 pixels, 5 MiB instead of the package's 23 MiB): the same emoji, order and
 * compositing, so a GPU machine can score fidelity from the training data it already has.
 */
async function loadPreparedDataset(dir: string): Promise<EmojiDataset> {
  const metaPath = join(dir, PREPARED_META);
  const pixPath = join(dir, PREPARED_PIXELS);
  let meta: PreparedMeta;
  try {
    meta = JSON.parse(await Deno.readTextFile(metaPath));
  } catch (e) {
    throw new CheckpointError(metaPath, `cannot read the emoji list: ${(e as Error).message}`);
  }
  const S = EMOJI_SIZE;
  if (meta.package !== EMOJI_PACKAGE || meta.size !== S || !Array.isArray(meta.emoji)) {
    throw new CheckpointError(
      metaPath,
      `expected ${EMOJI_PACKAGE} at ${S}×${S} with an "emoji" list (package ${meta.package}, size ${meta.size})`,
    );
  }
  let pixels: Uint8Array;
  try {
    pixels = new Uint8Array(gunzipSync(await Deno.readFile(pixPath)));
  } catch (e) {
    throw new CheckpointError(pixPath, `cannot read the pixels: ${(e as Error).message}`);
  }
  const n = meta.emoji.length;
  if (pixels.length !== n * S * S * 3) {
    throw new CheckpointError(
      pixPath,
      `${pixels.length} bytes, expected ${n}×${S}×${S}×3 for ${n} emoji`,
    );
  }
  const ds: EmojiDataset = { source: dir, entries: [], pixels, byName: new Map() };
  for (const [i, e] of meta.emoji.entries()) {
    if (e.index !== i || typeof e.name !== "string") {
      throw new CheckpointError(metaPath, `emoji[${i}]: expected index ${i} and a name`);
    }
    addEntry(ds, i, e);
  }
  return ds;
}

/** Adds emoji `i` to the list and the name index, its name split as the tokenizer does. */
function addEntry(
  ds: EmojiDataset,
  i: number,
  e: Pick<EmojiEntry, "name" | "unified" | "image" | "category" | "subcategory">,
): void {
  const name = words(e.name).slice(0, MAX_WORDS).join(" ");
  const { unified, image, category, subcategory } = e;
  ds.entries.push({ index: i, name, unified, image, category, subcategory });
  ds.byName.set(name, [...(ds.byName.get(name) ?? []), i]);
}

/** The dataset index a prompt names, or a reason it names none (or several). */
export function promptTarget(ds: EmojiDataset, prompt: string): number | string {
  const name = words(prompt).join(" ");
  const hits = ds.byName.get(name) ?? [];
  if (hits.length === 1) return hits[0];
  return hits.length === 0
    ? `"${prompt}" is no dataset emoji's name`
    : `"${prompt}" names ${hits.length} dataset emoji`;
}

/** Squared pixel distances (exact integers) of one RGB u8 image to every dataset emoji. */
export function distances(ds: EmojiDataset, rgb: Uint8Array): Float64Array {
  const n = EMOJI_SIZE * EMOJI_SIZE * 3;
  if (rgb.length !== n) {
    throw new RangeError(
      `image must be ${EMOJI_SIZE}×${EMOJI_SIZE} RGB (${n} bytes), got ${rgb.length}`,
    );
  }
  const out = new Float64Array(ds.entries.length);
  for (let k = 0; k < out.length; k++) {
    const row = ds.pixels.subarray(k * n, (k + 1) * n);
    // int32 is exact here (at most 12,288 · 255² < 2^31) and twice as fast as f64 sums.
    let s = 0;
    for (let i = 0; i < n; i++) {
      const d = (rgb[i] - row[i]) | 0;
      s = (s + Math.imul(d, d)) | 0;
    }
    out[k] = s;
  }
  return out;
}

/** Where one image lands: its nearest emoji and whether that is the prompted one. */
export interface FidelityHit {
  /** The prompt. */
  prompt: string;
  /** The seed of the image. */
  seed: number;
  /** The prompted emoji's index. */
  target: number;
  /** The nearest emoji's index (lowest index among equals). */
  nearest: number;
  /** The nearest emoji's name. */
  nearestName: string;
  /** The prompted emoji's category. */
  category: string;
  /** True when the prompted emoji is at the nearest distance (ties count). */
  hit: boolean;
  /** Mean squared error (per value, u8 units) to the prompted emoji. */
  mseTarget: number;
  /** Mean squared error (per value, u8 units) to the nearest emoji. */
  mseNearest: number;
}

/** Scores one image against the prompted emoji. */
export function scoreImage(
  ds: EmojiDataset,
  rgb: Uint8Array,
  target: number,
  prompt = "",
  seed = 0,
): FidelityHit {
  const d = distances(ds, rgb);
  let nearest = 0;
  for (let k = 1; k < d.length; k++) if (d[k] < d[nearest]) nearest = k;
  const n = rgb.length;
  return {
    prompt,
    seed,
    target,
    nearest,
    nearestName: ds.entries[nearest].name,
    category: ds.entries[target].category,
    hit: d[target] <= d[nearest],
    mseTarget: d[target] / n,
    mseNearest: d[nearest] / n,
  };
}

/** Prompt fidelity over a set of images. */
export interface FidelityResult {
  /** Share of hits, in %. */
  fidelity: number;
  /** Hits: images nearest to their prompted emoji. */
  hits: number;
  /** Images scored. */
  total: number;
  /** % per emoji category. */
  perCategory: Record<string, number>;
  /** Hits and images per emoji category. */
  perCategoryCounts: Record<string, [number, number]>;
  /** Every image's outcome. */
  images: FidelityHit[];
}

/** Sums per-image outcomes into the fidelity figure. */
export function summarizeFidelity(ds: EmojiDataset, images: FidelityHit[]): FidelityResult {
  if (images.length === 0) throw new RangeError("no images to score");
  const cats = new Map<string, [number, number]>();
  let hits = 0;
  for (const h of images) {
    hits += h.hit ? 1 : 0;
    const c = ds.entries[h.target].category;
    const v = cats.get(c) ?? [0, 0];
    v[0] += h.hit ? 1 : 0;
    v[1]++;
    cats.set(c, v);
  }
  const pct = (a: number, b: number) => Math.round((1e4 * a) / b) / 100;
  return {
    fidelity: pct(hits, images.length),
    hits,
    total: images.length,
    perCategory: Object.fromEntries([...cats].map(([k, [h, n]]) => [k, pct(h, n)])),
    perCategoryCounts: Object.fromEntries(cats),
    images,
  };
}
